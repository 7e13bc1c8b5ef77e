// torch glue for the CUDA kernels: ops registered with torch.library (schemas here, CUDA
// implementations below, fake/meta implementations in fa_kernels/cuda/ops.py). The kernels themselves
// live in csrc/norm/*.cu and csrc/attention/*.cu and include no torch header.
// Only c10's light CUDA headers: ATen/cuda/CUDAContext.h would pull in cuBLAS/cuSPARSE headers, which
// a minimal toolkit (nvcc + cudart) lacks.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "norm/rms_norm.h"
#ifdef FA_KERNELS_WITH_ATTENTION  // the CUDA recipe's attention kernels are PTX mma code: not on ROCm
#include "attention/flash_attn.h"
#endif

namespace {

fa_kernels::DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return fa_kernels::DType::kFloat32;
    case at::kHalf: return fa_kernels::DType::kFloat16;
    case at::kBFloat16: return fa_kernels::DType::kBFloat16;
    default: TORCH_CHECK(false, "fa_kernels: unsupported dtype ", t.scalar_type());
  }
}

void check_2d(const at::Tensor& t, const char* name, int64_t rows, int64_t cols) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, name, " must be [", rows, ", ", cols,
              "], got ", t.sizes());
  TORCH_CHECK(t.stride(1) == 1, name, " must be contiguous in its last dimension");
}

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "fa_kernels ", what, ": ", cudaGetErrorString(err));
}

// returns (y, residual_out, rstd, keep): residual_out is empty unless `store_residual_out`, keep unless
// `store_keep`
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rms_norm_fwd(
    const at::Tensor& x, const std::optional<at::Tensor>& residual, const std::optional<at::Tensor>& weight,
    double eps, double dropout_p, int64_t seed, at::ScalarType residual_dtype, bool store_residual_out,
    bool store_keep) {
  const int64_t rows = x.size(0), cols = x.size(1);
  check_2d(x, "x", rows, cols);
  TORCH_CHECK(cols <= fa_kernels::kMaxCols, "hidden size ", cols, " > ", fa_kernels::kMaxCols);
  if (residual) {
    check_2d(*residual, "residual", rows, cols);
    TORCH_CHECK(residual->scalar_type() == residual_dtype, "residual dtype must be ", residual_dtype);
  }
  if (weight) {
    TORCH_CHECK(weight->is_contiguous() && weight->numel() == cols && weight->scalar_type() == x.scalar_type(),
                "weight must be a contiguous [", cols, "] tensor of x's dtype");
  }
  const c10::cuda::CUDAGuard guard(x.device());
  auto y = at::empty_like(x, x.options().memory_format(at::MemoryFormat::Contiguous));
  auto residual_out = store_residual_out ? at::empty({rows, cols}, x.options().dtype(residual_dtype)) : at::Tensor();
  auto rstd = at::empty({rows}, x.options().dtype(at::kFloat));
  auto keep = store_keep ? at::empty({rows, cols}, x.options().dtype(at::kBool)) : at::Tensor();
  fa_kernels::RmsNormFwdParams p{};
  p.x = x.data_ptr();
  p.residual = residual ? residual->data_ptr() : nullptr;
  p.weight = weight ? weight->data_ptr() : nullptr;
  p.y = y.data_ptr();
  p.residual_out = store_residual_out ? residual_out.data_ptr() : nullptr;
  p.keep_out = store_keep ? reinterpret_cast<uint8_t*>(keep.data_ptr()) : nullptr;
  p.rstd = rstd.data_ptr<float>();
  p.rows = rows;
  p.cols = cols;
  p.x_stride = x.stride(0);
  p.residual_stride = residual ? residual->stride(0) : 0;
  p.y_stride = y.stride(0);
  p.residual_out_stride = store_residual_out ? residual_out.stride(0) : 0;
  p.dtype = dtype_of(x);
  p.residual_dtype = residual ? dtype_of(*residual) : (residual_dtype == at::kFloat ? fa_kernels::DType::kFloat32 : p.dtype);
  p.eps = static_cast<float>(eps);
  p.dropout_p = static_cast<float>(dropout_p);
  p.seed = static_cast<uint64_t>(seed);
  check_cuda(fa_kernels::rms_norm_fwd(p, c10::cuda::getCurrentCUDAStream()), "rms_norm_fwd");
  return {y, residual_out, rstd, keep};
}

// returns (dx, dresidual, dweight): dresidual is empty when it equals dx, dweight when weight is None
std::tuple<at::Tensor, at::Tensor, at::Tensor> rms_norm_bwd(
    const at::Tensor& dy, const at::Tensor& s, const at::Tensor& rstd, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& dresidual_out, double dropout_p, int64_t seed, at::ScalarType x_dtype,
    bool separate_dresidual) {
  const int64_t rows = s.size(0), cols = s.size(1);
  check_2d(dy, "dy", rows, cols);
  check_2d(s, "s", rows, cols);
  if (dresidual_out) check_2d(*dresidual_out, "dresidual_out", rows, cols);
  const c10::cuda::CUDAGuard guard(s.device());
  auto dx = at::empty({rows, cols}, dy.options().dtype(x_dtype));
  auto dresidual = separate_dresidual ? at::empty({rows, cols}, s.options()) : at::Tensor();
  int sm_count = 0;
  check_cuda(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, s.device().index()),
             "cudaDeviceGetAttribute");
  const int blocks = fa_kernels::rms_norm_bwd_blocks(rows, sm_count);
  auto partial = weight ? at::empty({blocks, cols}, dy.options().dtype(at::kFloat)) : at::Tensor();
  fa_kernels::RmsNormBwdParams p{};
  p.s = s.data_ptr();
  p.dy = dy.data_ptr();
  p.dresidual_out = dresidual_out ? dresidual_out->data_ptr() : nullptr;
  p.weight = weight ? weight->data_ptr() : nullptr;
  p.rstd = rstd.data_ptr<float>();
  p.dx = dx.data_ptr();
  p.dresidual = separate_dresidual ? dresidual.data_ptr() : nullptr;
  p.dweight_partial = weight ? partial.data_ptr<float>() : nullptr;
  p.rows = rows;
  p.cols = cols;
  p.s_stride = s.stride(0);
  p.dy_stride = dy.stride(0);
  p.dresidual_out_stride = dresidual_out ? dresidual_out->stride(0) : 0;
  p.dx_stride = dx.stride(0);
  p.dresidual_stride = separate_dresidual ? dresidual.stride(0) : 0;
  p.dtype = dtype_of(dy);
  p.residual_dtype = dtype_of(s);
  p.dropout_p = static_cast<float>(dropout_p);
  p.seed = static_cast<uint64_t>(seed);
  p.partial_rows = blocks;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  check_cuda(fa_kernels::rms_norm_bwd(p, stream), "rms_norm_bwd");
  at::Tensor dweight;
  if (weight) {
    dweight = at::empty_like(*weight);
    check_cuda(fa_kernels::rms_norm_dweight(partial.data_ptr<float>(), blocks, cols, dweight.data_ptr(),
                                            dtype_of(*weight), stream),
               "rms_norm_dweight");
  }
  return {dx, dresidual, dweight};
}


#ifdef FA_KERNELS_WITH_ATTENTION
// -- attention ---------------------------------------------------------------------------------

fa_kernels::Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

void check_attn(const at::Tensor& t, const char* name, const at::Tensor& q) {
  TORCH_CHECK(t.is_cuda() && t.device() == q.device(), name, " must be a CUDA tensor on q's device");
  TORCH_CHECK(t.dim() == 4, name, " must be (batch, seqlen, heads, head_dim), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == q.scalar_type(), name, " must have q's dtype");
  TORCH_CHECK(t.stride(3) == 1 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 && t.stride(2) % 8 == 0 &&
                  reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0,
              name, " must be contiguous in head_dim with 16-byte aligned rows");
}

fa_kernels::FlashParams attn_params(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                    bool causal) {
  TORCH_CHECK(q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16, "q must be float16 or bfloat16");
  check_attn(q, "q", q);
  check_attn(k, "k", q);
  check_attn(v, "v", q);
  TORCH_CHECK(fa_kernels::flash_supports_head_dim(static_cast<int>(q.size(3))), "head_dim ", q.size(3),
              " has no CUDA kernel (64 and 128 do)");
  TORCH_CHECK(k.size(0) == q.size(0) && k.sizes() == v.sizes() && k.size(3) == q.size(3) &&
                  q.size(2) % k.size(2) == 0,
              "k and v must be (batch, seqlen_k, heads_k, head_dim) with heads divisible by heads_k");
  fa_kernels::FlashParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.q_s = strides_of(q);
  p.k_s = strides_of(k);
  p.v_s = strides_of(v);
  p.batch = static_cast<int>(q.size(0));
  p.seqlen_q = static_cast<int>(q.size(1));
  p.heads = static_cast<int>(q.size(2));
  p.head_dim = static_cast<int>(q.size(3));
  p.seqlen_k = static_cast<int>(k.size(1));
  p.heads_k = static_cast<int>(k.size(2));
  p.softmax_scale = static_cast<float>(scale);
  p.causal = causal;
  p.dtype = q.scalar_type() == at::kBFloat16 ? fa_kernels::AttnDType::kBFloat16 : fa_kernels::AttnDType::kFloat16;
  return p;
}

// returns (out, lse (batch, heads, seqlen_q) float32)
std::tuple<at::Tensor, at::Tensor> flash_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             double softmax_scale, bool causal) {
  auto p = attn_params(q, k, v, softmax_scale, causal);
  const c10::cuda::CUDAGuard guard(q.device());
  auto out = at::empty_like(q, q.options().memory_format(at::MemoryFormat::Contiguous));
  auto lse = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));
  p.out = out.data_ptr();
  p.out_s = strides_of(out);
  p.lse = lse.data_ptr<float>();
  check_cuda(fa_kernels::flash_fwd(p, c10::cuda::getCurrentCUDAStream()), "flash_fwd");
  return {out, lse};
}

// returns (dq, dk, dv)
std::tuple<at::Tensor, at::Tensor, at::Tensor> flash_bwd(const at::Tensor& dout, const at::Tensor& q,
                                                         const at::Tensor& k, const at::Tensor& v,
                                                         const at::Tensor& out, const at::Tensor& lse,
                                                         double softmax_scale, bool causal) {
  auto p = attn_params(q, k, v, softmax_scale, causal);
  check_attn(dout, "dout", q);
  TORCH_CHECK(dout.sizes() == q.sizes() && out.sizes() == q.sizes(), "dout and out must be shaped like q");
  TORCH_CHECK(lse.is_contiguous() && lse.scalar_type() == at::kFloat &&
                  lse.sizes() == at::IntArrayRef({q.size(0), q.size(2), q.size(1)}),
              "lse must be contiguous float32 (batch, heads, seqlen_q)");
  const c10::cuda::CUDAGuard guard(q.device());
  // delta = rowsum(dout * out) in float32, laid out like lse
  auto delta = (dout.to(at::kFloat) * out.to(at::kFloat)).sum(-1).transpose(1, 2).contiguous();
  auto dq = at::empty_like(q, q.options().memory_format(at::MemoryFormat::Contiguous));
  auto dk = at::empty_like(k, k.options().memory_format(at::MemoryFormat::Contiguous));
  auto dv = at::empty_like(v, v.options().memory_format(at::MemoryFormat::Contiguous));
  p.dout = dout.data_ptr();
  p.dout_s = strides_of(dout);
  p.lse = lse.data_ptr<float>();
  p.delta = delta.data_ptr<float>();
  p.dq = dq.data_ptr();
  p.dk = dk.data_ptr();
  p.dv = dv.data_ptr();
  p.dq_s = strides_of(dq);
  p.dk_s = strides_of(dk);
  p.dv_s = strides_of(dv);
  check_cuda(fa_kernels::flash_bwd(p, c10::cuda::getCurrentCUDAStream()), "flash_bwd");
  return {dq, dk, dv};
}
#endif

}  // namespace

TORCH_LIBRARY(fa_kernels, m) {
  m.def(
      "rms_norm_fwd(Tensor x, Tensor? residual, Tensor? weight, float eps, float dropout_p, int seed, "
      "ScalarType residual_dtype, bool store_residual_out, bool store_keep) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "rms_norm_bwd(Tensor dy, Tensor s, Tensor rstd, Tensor? weight, Tensor? dresidual_out, float dropout_p, "
      "int seed, ScalarType x_dtype, bool separate_dresidual) -> (Tensor, Tensor, Tensor)");
#ifdef FA_KERNELS_WITH_ATTENTION
  m.def("flash_fwd(Tensor q, Tensor k, Tensor v, float softmax_scale, bool causal) -> (Tensor, Tensor)");
  m.def(
      "flash_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, float softmax_scale, "
      "bool causal) -> (Tensor, Tensor, Tensor)");
#endif
}

TORCH_LIBRARY_IMPL(fa_kernels, CUDA, m) {
  m.impl("rms_norm_fwd", &rms_norm_fwd);
  m.impl("rms_norm_bwd", &rms_norm_bwd);
#ifdef FA_KERNELS_WITH_ATTENTION
  m.impl("flash_fwd", &flash_fwd);
  m.impl("flash_bwd", &flash_bwd);
#endif
}

// `import fa_kernels._C` loads the library, which registers the ops above.
extern "C" {
#include <Python.h>
PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}
