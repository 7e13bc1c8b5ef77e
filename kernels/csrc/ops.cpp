// torch glue for the CUDA kernels: ops registered with torch.library (schemas here, CUDA
// implementations below, fake/meta implementations in fa_kernels/cuda/ops.py). The kernels themselves
// live in csrc/norm/*.cu and csrc/attention/*.cu and include no torch header.
// Only c10's light CUDA headers: ATen/cuda/CUDAContext.h would pull in cuBLAS/cuSPARSE headers, which
// a minimal toolkit (nvcc + cudart) lacks.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <climits>
#include <cmath>
#include <string>

#include "norm/rms_norm.h"
#ifdef FA_KERNELS_WITH_ATTENTION  // the CUDA recipe's attention kernels are PTX mma code: not on ROCm
#include "attention/flash_attn.h"
#endif

namespace {

// Every message below is built from strings only (std::to_string, c10::toString), never by streaming a
// number: an extension linked against its own static copy of libstdc++ crashed in std::ostream's number
// formatting instead of raising (issue #10). fa-dist refuses such builds; this keeps a check a Python
// exception even if one slips through. TORCH_CHECK_TYPE / _VALUE raise TypeError / ValueError.
std::string num(int64_t v) { return std::to_string(v); }

std::string shape_of(const at::Tensor& t) {
  std::string out = "[";
  for (int64_t d = 0; d < t.dim(); ++d) out += (d ? ", " : "") + num(t.size(d));
  return out + "]";
}

std::string describe(const at::Tensor& t) {
  return std::string(c10::toString(t.scalar_type())) + " " + shape_of(t) + " on " + t.device().str();
}

bool is_float_type(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16; }

fa_kernels::DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return fa_kernels::DType::kFloat32;
    case at::kHalf: return fa_kernels::DType::kFloat16;
    case at::kBFloat16: return fa_kernels::DType::kBFloat16;
    default:
      TORCH_CHECK_TYPE(false, std::string("fa_kernels: unsupported dtype ") + c10::toString(t) +
                                  " (float32, float16 or bfloat16)");
  }
}

// `t` is a CUDA tensor on `device` with a floating dtype the kernels know
void check_tensor(const at::Tensor& t, const std::string& name, const c10::Device& device) {
  TORCH_CHECK_VALUE(t.defined(), name + " is an undefined tensor");
  TORCH_CHECK_VALUE(t.is_cuda() && t.device() == device,
                    name + " must be a CUDA tensor on " + device.str() + ", got " + describe(t));
  TORCH_CHECK_TYPE(is_float_type(t.scalar_type()),
                   name + " must be float32, float16 or bfloat16, got " + describe(t));
}

void check_2d(const at::Tensor& t, const std::string& name, const c10::Device& device, int64_t rows,
              int64_t cols) {
  check_tensor(t, name, device);
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols,
                    name + " must be [" + num(rows) + ", " + num(cols) + "], got " + describe(t));
  TORCH_CHECK_VALUE(t.stride(1) == 1 || cols <= 1, name + " must be contiguous in its last dimension");
}

void check_weight(const std::optional<at::Tensor>& weight, const c10::Device& device, int64_t cols,
                  at::ScalarType x_dtype) {
  if (!weight) return;
  check_tensor(*weight, "weight", device);
  TORCH_CHECK_VALUE(weight->dim() == 1 && weight->size(0) == cols && weight->is_contiguous(),
                    "weight must be a contiguous [" + num(cols) + "] tensor, got " + describe(*weight));
  TORCH_CHECK_TYPE(weight->scalar_type() == x_dtype || weight->scalar_type() == at::kFloat,
                   std::string("weight must be float32 or x's dtype ") + c10::toString(x_dtype) + ", got " +
                       c10::toString(weight->scalar_type()));
}

void check_residual_dtype(at::ScalarType residual_dtype, at::ScalarType x_dtype, const char* what) {
  TORCH_CHECK_TYPE(residual_dtype == x_dtype || residual_dtype == at::kFloat,
                   std::string(what) + " must be float32 or x's dtype " + c10::toString(x_dtype) + ", got " +
                       c10::toString(residual_dtype));
}

void check_dropout(double dropout_p) {
  TORCH_CHECK_VALUE(dropout_p >= 0.0 && dropout_p < 1.0,
                    "dropout_p must be in [0, 1), got " + std::to_string(dropout_p));
}

void check_rows_cols(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 2, std::string(name) + " must be 2-D [rows, hidden], got " + describe(t));
  const int64_t cols = t.size(1);
  TORCH_CHECK_VALUE(cols >= 1 && cols <= fa_kernels::kMaxCols,
                    std::string(name) + ": hidden size " + num(cols) + " must be in [1, " +
                        num(fa_kernels::kMaxCols) + "]");
  TORCH_CHECK_VALUE(t.size(0) <= INT32_MAX, std::string(name) + ": more than 2^31 - 1 rows");
}

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, std::string("fa_kernels ") + what + ": " + cudaGetErrorString(err));
}

// returns (y, residual_out, rstd, keep): residual_out is empty unless `store_residual_out`, keep unless
// `store_keep`. weight: x's dtype or float32; residual: residual_dtype (x's or float32); y: out_dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rms_norm_fwd(
    const at::Tensor& x, const std::optional<at::Tensor>& residual, const std::optional<at::Tensor>& weight,
    double eps, double dropout_p, int64_t seed, at::ScalarType residual_dtype, at::ScalarType out_dtype,
    bool store_residual_out, bool store_keep) {
  TORCH_CHECK_VALUE(x.defined() && x.is_cuda(), "x must be a CUDA tensor");
  check_rows_cols(x, "x");
  const int64_t rows = x.size(0), cols = x.size(1);
  const c10::Device device = x.device();
  check_2d(x, "x", device, rows, cols);
  check_residual_dtype(residual_dtype, x.scalar_type(), "residual_dtype");
  TORCH_CHECK_TYPE(is_float_type(out_dtype),
                   std::string("out_dtype must be float32, float16 or bfloat16, got ") + c10::toString(out_dtype));
  if (residual) {
    check_2d(*residual, "residual", device, rows, cols);
    TORCH_CHECK_TYPE(residual->scalar_type() == residual_dtype,
                     std::string("residual must be residual_dtype ") + c10::toString(residual_dtype) + ", got " +
                         c10::toString(residual->scalar_type()));
  }
  check_weight(weight, device, cols, x.scalar_type());
  TORCH_CHECK_VALUE(eps >= 0.0 && std::isfinite(eps), "eps must be finite and >= 0, got " + std::to_string(eps));
  check_dropout(dropout_p);
  TORCH_CHECK_VALUE(!store_keep || dropout_p > 0.0, "store_keep needs dropout_p > 0");
  const c10::cuda::CUDAGuard guard(device);
  auto y = at::empty({rows, cols}, x.options().dtype(out_dtype));
  auto residual_out = store_residual_out ? at::empty({rows, cols}, x.options().dtype(residual_dtype)) : at::Tensor();
  auto rstd = at::empty({rows}, x.options().dtype(at::kFloat));
  auto keep = store_keep ? at::empty({rows, cols}, x.options().dtype(at::kBool)) : at::Tensor();
  if (rows == 0) return {y, residual_out, rstd, keep};  // nothing to launch: empty in, empty out
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
  p.dtype = to_dtype(x.scalar_type());
  p.residual_dtype = to_dtype(residual_dtype);
  p.weight_dtype = weight ? to_dtype(weight->scalar_type()) : p.dtype;
  p.out_dtype = to_dtype(out_dtype);
  p.eps = static_cast<float>(eps);
  p.dropout_p = static_cast<float>(dropout_p);
  p.seed = static_cast<uint64_t>(seed);
  check_cuda(fa_kernels::rms_norm_fwd(p, c10::cuda::getCurrentCUDAStream()), "rms_norm_fwd");
  return {y, residual_out, rstd, keep};
}

// returns (dx, dresidual, dweight): dx in x_dtype, dresidual (s's dtype) empty when it equals dx, dweight
// (weight's dtype) empty when weight is None
std::tuple<at::Tensor, at::Tensor, at::Tensor> rms_norm_bwd(
    const at::Tensor& dy, const at::Tensor& s, const at::Tensor& rstd, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& dresidual_out, double dropout_p, int64_t seed, at::ScalarType x_dtype,
    bool separate_dresidual) {
  TORCH_CHECK_VALUE(s.defined() && s.is_cuda(), "s must be a CUDA tensor");
  check_rows_cols(s, "s");
  const int64_t rows = s.size(0), cols = s.size(1);
  const c10::Device device = s.device();
  check_2d(s, "s", device, rows, cols);
  check_2d(dy, "dy", device, rows, cols);
  TORCH_CHECK_TYPE(is_float_type(x_dtype),
                   std::string("x_dtype must be float32, float16 or bfloat16, got ") + c10::toString(x_dtype));
  check_residual_dtype(s.scalar_type(), x_dtype, "s (the saved pre-norm sum)");
  TORCH_CHECK_VALUE(rstd.defined() && rstd.is_cuda() && rstd.device() == device &&
                        rstd.scalar_type() == at::kFloat && rstd.dim() == 1 && rstd.size(0) == rows &&
                        rstd.is_contiguous(),
                    "rstd must be a contiguous float32 [" + num(rows) + "] tensor on s's device, got " +
                        (rstd.defined() ? describe(rstd) : std::string("undefined")));
  check_weight(weight, device, cols, x_dtype);
  if (dresidual_out) {
    check_2d(*dresidual_out, "dresidual_out", device, rows, cols);
    TORCH_CHECK_TYPE(dresidual_out->scalar_type() == s.scalar_type(),
                     std::string("dresidual_out must have s's dtype ") + c10::toString(s.scalar_type()) + ", got " +
                         c10::toString(dresidual_out->scalar_type()));
  }
  check_dropout(dropout_p);
  const c10::cuda::CUDAGuard guard(device);
  auto dx = at::empty({rows, cols}, s.options().dtype(x_dtype));
  auto dresidual = separate_dresidual ? at::empty({rows, cols}, s.options()) : at::Tensor();
  if (rows == 0) {  // no rows: nothing to launch, and dweight sums over nothing
    return {dx, dresidual, weight ? at::zeros_like(*weight) : at::Tensor()};
  }
  int sm_count = 0;
  check_cuda(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device.index()),
             "cudaDeviceGetAttribute");
  const int blocks = fa_kernels::rms_norm_bwd_blocks(rows, sm_count);
  auto partial = weight ? at::empty({blocks, cols}, s.options().dtype(at::kFloat)) : at::Tensor();
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
  p.dtype = to_dtype(x_dtype);
  p.residual_dtype = to_dtype(s.scalar_type());
  p.weight_dtype = weight ? to_dtype(weight->scalar_type()) : p.dtype;
  p.dy_dtype = to_dtype(dy.scalar_type());
  p.dropout_p = static_cast<float>(dropout_p);
  p.seed = static_cast<uint64_t>(seed);
  p.partial_rows = blocks;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  check_cuda(fa_kernels::rms_norm_bwd(p, stream), "rms_norm_bwd");
  at::Tensor dweight;
  if (weight) {
    dweight = at::empty_like(*weight);
    check_cuda(fa_kernels::rms_norm_dweight(partial.data_ptr<float>(), blocks, cols, dweight.data_ptr(),
                                            p.weight_dtype, stream),
               "rms_norm_dweight");
  }
  return {dx, dresidual, dweight};
}


#ifdef FA_KERNELS_WITH_ATTENTION
// -- attention ---------------------------------------------------------------------------------

fa_kernels::Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

void check_attn(const at::Tensor& t, const char* name, const at::Tensor& q) {
  const std::string n(name);
  TORCH_CHECK_VALUE(t.defined() && t.is_cuda() && t.device() == q.device(),
                    n + " must be a CUDA tensor on q's device " + q.device().str() +
                        (t.defined() ? ", got " + describe(t) : std::string()));
  TORCH_CHECK_VALUE(t.dim() == 4, n + " must be (batch, seqlen, heads, head_dim), got " + describe(t));
  TORCH_CHECK_TYPE(t.scalar_type() == q.scalar_type(),
                   n + " must have q's dtype " + c10::toString(q.scalar_type()) + ", got " + describe(t));
  for (int64_t d = 0; d < 3; ++d) {
    TORCH_CHECK_VALUE(t.size(d) <= INT32_MAX, n + ": dimension " + num(d) + " does not fit in 32 bits");
  }
  TORCH_CHECK_VALUE(t.stride(3) == 1 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 && t.stride(2) % 8 == 0 &&
                        reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0,
                    n + " must be contiguous in head_dim with 16-byte aligned rows");
}

fa_kernels::FlashParams attn_params(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                    bool causal) {
  TORCH_CHECK_VALUE(q.defined() && q.is_cuda(), "q must be a CUDA tensor");
  TORCH_CHECK_TYPE(q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16,
                   "q must be float16 or bfloat16, got " + describe(q));
  check_attn(q, "q", q);
  check_attn(k, "k", q);
  check_attn(v, "v", q);
  TORCH_CHECK_VALUE(std::isfinite(scale), "softmax_scale must be finite, got " + std::to_string(scale));
  TORCH_CHECK_VALUE(fa_kernels::flash_supports_head_dim(static_cast<int>(q.size(3))),
                    "head_dim " + num(q.size(3)) + " has no CUDA kernel (64 and 128 do)");
  TORCH_CHECK_VALUE(k.size(0) == q.size(0) && k.sizes() == v.sizes() && k.size(3) == q.size(3) &&
                        k.size(2) > 0 && q.size(2) % k.size(2) == 0,
                    "k and v must be (batch, seqlen_k, heads_k, head_dim) with q's batch and head_dim and heads "
                    "divisible by heads_k; got q " + shape_of(q) + ", k " + shape_of(k) + ", v " + shape_of(v));
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

// flash_attn's convention for no keys: out 0, lse +inf (and zero gradients); nothing to launch
bool attn_empty(const at::Tensor& q, const at::Tensor& k) { return q.numel() == 0 || k.size(1) == 0; }

// returns (out, lse (batch, heads, seqlen_q) float32)
std::tuple<at::Tensor, at::Tensor> flash_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             double softmax_scale, bool causal) {
  auto p = attn_params(q, k, v, softmax_scale, causal);
  const c10::cuda::CUDAGuard guard(q.device());
  auto out = at::empty_like(q, q.options().memory_format(at::MemoryFormat::Contiguous));
  auto lse = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));
  if (attn_empty(q, k)) return {out.zero_(), lse.fill_(INFINITY)};
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
  check_attn(out, "out", q);
  TORCH_CHECK_VALUE(dout.sizes() == q.sizes() && out.sizes() == q.sizes(),
                    "dout and out must be shaped like q " + shape_of(q) + ", got dout " + shape_of(dout) +
                        ", out " + shape_of(out));
  TORCH_CHECK_VALUE(lse.defined() && lse.is_cuda() && lse.device() == q.device() && lse.is_contiguous() &&
                        lse.scalar_type() == at::kFloat &&
                        lse.sizes() == at::IntArrayRef({q.size(0), q.size(2), q.size(1)}),
                    "lse must be a contiguous float32 (batch, heads, seqlen_q) = [" + num(q.size(0)) + ", " +
                        num(q.size(2)) + ", " + num(q.size(1)) + "] tensor on q's device" +
                        (lse.defined() ? ", got " + describe(lse) : std::string()));
  const c10::cuda::CUDAGuard guard(q.device());
  if (attn_empty(q, k)) return {at::zeros_like(q), at::zeros_like(k), at::zeros_like(v)};
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
      "ScalarType residual_dtype, ScalarType out_dtype, bool store_residual_out, bool store_keep) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
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
