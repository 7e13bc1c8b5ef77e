// torch glue for the CUDA kernels: ops registered with torch.library (schemas here, CUDA
// implementations below, fake/meta implementations in fa_kernels/cuda/*.py). The kernels themselves
// live in csrc/norm/*.cu and csrc/attention/*.cu and include no torch header.
//
// Written against torch's stable ABI (torch/csrc/stable, the C shim underneath): built with
// TORCH_TARGET_VERSION = torch 2.10 the binary references only aoti_torch_* / torch_* C functions that
// torch 2.10 exports, so one build loads into every torch from 2.10 on; and only Python's limited API
// (the empty module init at the bottom), so one build serves every CPython from 3.10 on.
#include <cuda_runtime.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>

#include <array>
#include <climits>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>

#include "norm/rms_norm.h"
#ifdef FA_KERNELS_WITH_ATTENTION  // the CUDA recipe's attention kernels are PTX mma code: not on ROCm
#include "attention/flash_attn.h"
#endif

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

// -- errors ------------------------------------------------------------------------------------
// An exception leaves a stable-ABI kernel as the standard C++ exception it is, and torch's Python binding
// maps those: std::invalid_argument -> ValueError, any other std::exception -> RuntimeError. There is no
// standard exception for TypeError, so a type error is an invalid_argument whose message starts with
// "fa_kernels TypeError: ": a direct torch.ops call raises it as ValueError with that text, and the
// public API raises TypeError (fa_kernels/cuda/_errors.py). Every message is built from strings only
// (std::to_string, toString), never by streaming a number: an extension linked against its own static
// copy of libstdc++ crashed in std::ostream's number formatting instead of raising (issue #10). That is
// also why these checks do not use STD_TORCH_CHECK, which streams __LINE__.
void check_value(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}
void check_type(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("fa_kernels TypeError: " + message);
}

std::string num(int64_t v) { return std::to_string(v); }

std::string shape_of(const Tensor& t) {
  std::string out = "[";
  for (int64_t d = 0; d < t.dim(); ++d) out += (d ? ", " : "") + num(t.size(d));
  return out + "]";
}

std::string device_of(const Tensor& t) {
  return t.is_cuda() ? "cuda:" + num(t.get_device_index()) : t.is_cpu() ? "cpu" : "a non-CUDA device";
}

std::string describe(const Tensor& t) {
  return std::string(torch::headeronly::toString(t.scalar_type())) + " " + shape_of(t) + " on " + device_of(t);
}

std::string name_of(ScalarType t) { return torch::headeronly::toString(t); }

bool same_shape(const Tensor& a, const Tensor& b) {
  if (a.dim() != b.dim()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) != b.size(d)) return false;
  }
  return true;
}

bool on_device(const Tensor& t, int32_t device) { return t.is_cuda() && t.get_device_index() == device; }

bool is_float_type(ScalarType t) {
  return t == ScalarType::Float || t == ScalarType::Half || t == ScalarType::BFloat16;
}

fa_kernels::DType to_dtype(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return fa_kernels::DType::kFloat32;
    case ScalarType::Half: return fa_kernels::DType::kFloat16;
    case ScalarType::BFloat16: return fa_kernels::DType::kBFloat16;
    default:
      check_type(false, "fa_kernels: unsupported dtype " + name_of(t) + " (float32, float16 or bfloat16)");
      return fa_kernels::DType::kFloat32;  // not reached
  }
}

// -- the stable ABI's torch pieces -------------------------------------------------------------

// A new contiguous CUDA tensor on `like`'s device.
Tensor empty(std::initializer_list<int64_t> sizes, ScalarType dtype, const Tensor& like) {
  return torch::stable::empty(sizes, dtype, std::nullopt, like.device());
}

Tensor zeros_like(const Tensor& t) {
  Tensor zeros = torch::stable::empty_like(t);
  return torch::stable::zero_(zeros);
}

// A failing call into torch's C shim, as an exception. Not STABLE_TORCH_ERROR_CODE_CHECK: the headers of
// torch 2.10-2.12 (which the stable-ABI wheel is built against) lack it, and the older
// TORCH_ERROR_CODE_CHECK streams __LINE__ through an ostream (issue #10: keep every message string-only).
void check_shim(AOTITorchError err, const char* what) {
  if (err != AOTI_TORCH_SUCCESS) throw std::runtime_error(std::string("fa_kernels: torch's C shim failed in ") + what);
}

// The stream torch's current-stream state names for `device`: what c10::cuda::getCurrentCUDAStream
// returned in the ATen glue (a torch.cuda.stream(...) context, CUDA graphs capture).
cudaStream_t current_stream(int32_t device) {
  void* stream = nullptr;
  check_shim(aoti_torch_get_current_cuda_stream(device, &stream), "aoti_torch_get_current_cuda_stream");
  return static_cast<cudaStream_t>(stream);
}

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// -- checks ------------------------------------------------------------------------------------

// `t` is a CUDA tensor on `device` with a floating dtype the kernels know
void check_tensor(const Tensor& t, const std::string& name, int32_t device) {
  check_value(t.defined(), name + " is an undefined tensor");
  check_value(on_device(t, device), name + " must be a CUDA tensor on cuda:" + num(device) + ", got " + describe(t));
  check_type(is_float_type(t.scalar_type()), name + " must be float32, float16 or bfloat16, got " + describe(t));
}

void check_2d(const Tensor& t, const std::string& name, int32_t device, int64_t rows, int64_t cols) {
  check_tensor(t, name, device);
  check_value(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols,
              name + " must be [" + num(rows) + ", " + num(cols) + "], got " + describe(t));
  check_value(t.stride(1) == 1 || cols <= 1, name + " must be contiguous in its last dimension");
}

void check_weight(const std::optional<Tensor>& weight, int32_t device, int64_t cols, ScalarType x_dtype) {
  if (!weight) return;
  check_tensor(*weight, "weight", device);
  check_value(weight->dim() == 1 && weight->size(0) == cols && weight->is_contiguous(),
              "weight must be a contiguous [" + num(cols) + "] tensor, got " + describe(*weight));
  check_type(weight->scalar_type() == x_dtype || weight->scalar_type() == ScalarType::Float,
             "weight must be float32 or x's dtype " + name_of(x_dtype) + ", got " + name_of(weight->scalar_type()));
}

void check_residual_dtype(ScalarType residual_dtype, ScalarType x_dtype, const char* what) {
  check_type(residual_dtype == x_dtype || residual_dtype == ScalarType::Float,
             std::string(what) + " must be float32 or x's dtype " + name_of(x_dtype) + ", got " +
                 name_of(residual_dtype));
}

void check_dropout(double dropout_p) {
  check_value(dropout_p >= 0.0 && dropout_p < 1.0, "dropout_p must be in [0, 1), got " + std::to_string(dropout_p));
}

void check_rows_cols(const Tensor& t, const char* name) {
  check_value(t.dim() == 2, std::string(name) + " must be 2-D [rows, hidden], got " + describe(t));
  const int64_t cols = t.size(1);
  check_value(cols >= 1 && cols <= fa_kernels::kMaxCols, std::string(name) + ": hidden size " + num(cols) +
                                                             " must be in [1, " + num(fa_kernels::kMaxCols) + "]");
  check_value(t.size(0) <= INT32_MAX, std::string(name) + ": more than 2^31 - 1 rows");
}

// -- norm --------------------------------------------------------------------------------------

// returns (y, residual_out, rstd, keep): residual_out is undefined unless `store_residual_out`, keep
// unless `store_keep`. weight: x's dtype or float32; residual: residual_dtype (x's or float32); y: out_dtype.
std::tuple<Tensor, Tensor, Tensor, Tensor> rms_norm_fwd(const Tensor& x, std::optional<Tensor> residual,
                                                        std::optional<Tensor> weight, double eps, double dropout_p,
                                                        int64_t seed, ScalarType residual_dtype,
                                                        ScalarType out_dtype, bool store_residual_out,
                                                        bool store_keep) {
  check_value(x.defined() && x.is_cuda(), "x must be a CUDA tensor");
  check_rows_cols(x, "x");
  const int64_t rows = x.size(0), cols = x.size(1);
  const int32_t device = x.get_device_index();
  check_2d(x, "x", device, rows, cols);
  check_residual_dtype(residual_dtype, x.scalar_type(), "residual_dtype");
  check_type(is_float_type(out_dtype), "out_dtype must be float32, float16 or bfloat16, got " + name_of(out_dtype));
  if (residual) {
    check_2d(*residual, "residual", device, rows, cols);
    check_type(residual->scalar_type() == residual_dtype, "residual must be residual_dtype " + name_of(residual_dtype) +
                                                              ", got " + name_of(residual->scalar_type()));
  }
  check_weight(weight, device, cols, x.scalar_type());
  check_value(eps >= 0.0 && std::isfinite(eps), "eps must be finite and >= 0, got " + std::to_string(eps));
  check_dropout(dropout_p);
  check_value(!store_keep || dropout_p > 0.0, "store_keep needs dropout_p > 0");
  const torch::stable::accelerator::DeviceGuard guard(device);
  Tensor y = empty({rows, cols}, out_dtype, x);
  Tensor residual_out = store_residual_out ? empty({rows, cols}, residual_dtype, x) : Tensor();
  Tensor rstd = empty({rows}, ScalarType::Float, x);
  Tensor keep = store_keep ? empty({rows, cols}, ScalarType::Bool, x) : Tensor();
  if (rows == 0) return {y, residual_out, rstd, keep};  // nothing to launch: empty in, empty out
  fa_kernels::RmsNormFwdParams p{};
  p.x = x.data_ptr();
  p.residual = residual ? residual->data_ptr() : nullptr;
  p.weight = weight ? weight->data_ptr() : nullptr;
  p.y = y.data_ptr();
  p.residual_out = store_residual_out ? residual_out.data_ptr() : nullptr;
  p.keep_out = store_keep ? static_cast<uint8_t*>(keep.data_ptr()) : nullptr;
  p.rstd = static_cast<float*>(rstd.data_ptr());
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
  check_cuda(fa_kernels::rms_norm_fwd(p, current_stream(device)), "fa_kernels rms_norm_fwd");
  return {y, residual_out, rstd, keep};
}

// returns (dx, dresidual, dweight): dx in x_dtype, dresidual (s's dtype) undefined when it equals dx,
// dweight (weight's dtype) undefined when weight is None
std::tuple<Tensor, Tensor, Tensor> rms_norm_bwd(const Tensor& dy, const Tensor& s, const Tensor& rstd,
                                                std::optional<Tensor> weight, std::optional<Tensor> dresidual_out,
                                                double dropout_p, int64_t seed, ScalarType x_dtype,
                                                bool separate_dresidual) {
  check_value(s.defined() && s.is_cuda(), "s must be a CUDA tensor");
  check_rows_cols(s, "s");
  const int64_t rows = s.size(0), cols = s.size(1);
  const int32_t device = s.get_device_index();
  check_2d(s, "s", device, rows, cols);
  check_2d(dy, "dy", device, rows, cols);
  check_type(is_float_type(x_dtype), "x_dtype must be float32, float16 or bfloat16, got " + name_of(x_dtype));
  check_residual_dtype(s.scalar_type(), x_dtype, "s (the saved pre-norm sum)");
  check_value(rstd.defined() && on_device(rstd, device) && rstd.scalar_type() == ScalarType::Float &&
                  rstd.dim() == 1 && rstd.size(0) == rows && rstd.is_contiguous(),
              "rstd must be a contiguous float32 [" + num(rows) + "] tensor on s's device, got " +
                  (rstd.defined() ? describe(rstd) : std::string("undefined")));
  check_weight(weight, device, cols, x_dtype);
  if (dresidual_out) {
    check_2d(*dresidual_out, "dresidual_out", device, rows, cols);
    check_type(dresidual_out->scalar_type() == s.scalar_type(), "dresidual_out must have s's dtype " +
                                                                    name_of(s.scalar_type()) + ", got " +
                                                                    name_of(dresidual_out->scalar_type()));
  }
  check_dropout(dropout_p);
  const torch::stable::accelerator::DeviceGuard guard(device);
  Tensor dx = empty({rows, cols}, x_dtype, s);
  Tensor dresidual = separate_dresidual ? empty({rows, cols}, s.scalar_type(), s) : Tensor();
  if (rows == 0) {  // no rows: nothing to launch, and dweight sums over nothing
    return {dx, dresidual, weight ? zeros_like(*weight) : Tensor()};
  }
  int sm_count = 0;
  check_cuda(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device),
             "fa_kernels cudaDeviceGetAttribute");
  const int blocks = fa_kernels::rms_norm_bwd_blocks(rows, sm_count);
  Tensor partial = weight ? empty({blocks, cols}, ScalarType::Float, s) : Tensor();
  fa_kernels::RmsNormBwdParams p{};
  p.s = s.data_ptr();
  p.dy = dy.data_ptr();
  p.dresidual_out = dresidual_out ? dresidual_out->data_ptr() : nullptr;
  p.weight = weight ? weight->data_ptr() : nullptr;
  p.rstd = static_cast<const float*>(rstd.data_ptr());
  p.dx = dx.data_ptr();
  p.dresidual = separate_dresidual ? dresidual.data_ptr() : nullptr;
  p.dweight_partial = weight ? static_cast<float*>(partial.data_ptr()) : nullptr;
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
  const cudaStream_t stream = current_stream(device);
  check_cuda(fa_kernels::rms_norm_bwd(p, stream), "fa_kernels rms_norm_bwd");
  Tensor dweight;
  if (weight) {
    dweight = torch::stable::empty_like(*weight);
    check_cuda(fa_kernels::rms_norm_dweight(static_cast<float*>(partial.data_ptr()), blocks, cols,
                                            dweight.data_ptr(), p.weight_dtype, stream),
               "fa_kernels rms_norm_dweight");
  }
  return {dx, dresidual, dweight};
}

#ifdef FA_KERNELS_WITH_ATTENTION
// -- attention ---------------------------------------------------------------------------------

fa_kernels::Strides strides_of(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

void check_attn(const Tensor& t, const char* name, const Tensor& q) {
  const std::string n(name);
  check_value(t.defined() && on_device(t, q.get_device_index()),
              n + " must be a CUDA tensor on q's device " + device_of(q) +
                  (t.defined() ? ", got " + describe(t) : std::string()));
  check_value(t.dim() == 4, n + " must be (batch, seqlen, heads, head_dim), got " + describe(t));
  check_type(t.scalar_type() == q.scalar_type(),
             n + " must have q's dtype " + name_of(q.scalar_type()) + ", got " + describe(t));
  for (int64_t d = 0; d < 3; ++d) {
    check_value(t.size(d) <= INT32_MAX, n + ": dimension " + num(d) + " does not fit in 32 bits");
  }
  check_value(t.stride(3) == 1 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 && t.stride(2) % 8 == 0 &&
                  reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0,
              n + " must be contiguous in head_dim with 16-byte aligned rows");
}

fa_kernels::FlashParams attn_params(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal) {
  check_value(q.defined() && q.is_cuda(), "q must be a CUDA tensor");
  check_type(q.scalar_type() == ScalarType::Half || q.scalar_type() == ScalarType::BFloat16,
             "q must be float16 or bfloat16, got " + describe(q));
  check_attn(q, "q", q);
  check_attn(k, "k", q);
  check_attn(v, "v", q);
  check_value(std::isfinite(scale), "softmax_scale must be finite, got " + std::to_string(scale));
  check_value(fa_kernels::flash_supports_head_dim(static_cast<int>(q.size(3))),
              "head_dim " + num(q.size(3)) + " has no CUDA kernel (64 and 128 do)");
  check_value(k.size(0) == q.size(0) && same_shape(k, v) && k.size(3) == q.size(3) && k.size(2) > 0 &&
                  q.size(2) % k.size(2) == 0,
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
  p.dtype = q.scalar_type() == ScalarType::BFloat16 ? fa_kernels::AttnDType::kBFloat16
                                                    : fa_kernels::AttnDType::kFloat16;
  return p;
}

// flash_attn's convention for no keys: out 0, lse +inf (and zero gradients); nothing to launch
bool attn_empty(const Tensor& q, const Tensor& k) { return q.numel() == 0 || k.size(1) == 0; }

// aten::mul.Tensor through the dispatcher: the stable ops header has no mul at torch 2.10
Tensor mul(const Tensor& a, const Tensor& b) {
  std::array<StableIValue, 2> stack{torch::stable::detail::from(a), torch::stable::detail::from(b)};
  check_shim(torch_call_dispatcher("aten::mul", "Tensor", stack.data(), TORCH_ABI_VERSION), "aten::mul");
  return torch::stable::detail::to<Tensor>(stack[0]);
}

// returns (out, lse (batch, heads, seqlen_q) float32)
std::tuple<Tensor, Tensor> flash_fwd(const Tensor& q, const Tensor& k, const Tensor& v, double softmax_scale,
                                     bool causal) {
  auto p = attn_params(q, k, v, softmax_scale, causal);
  const int32_t device = q.get_device_index();
  const torch::stable::accelerator::DeviceGuard guard(device);
  Tensor out = empty({q.size(0), q.size(1), q.size(2), q.size(3)}, q.scalar_type(), q);
  Tensor lse = empty({q.size(0), q.size(2), q.size(1)}, ScalarType::Float, q);
  if (attn_empty(q, k)) {
    torch::stable::zero_(out);
    return {out, torch::stable::fill_(lse, INFINITY)};
  }
  p.out = out.data_ptr();
  p.out_s = strides_of(out);
  p.lse = static_cast<float*>(lse.data_ptr());
  check_cuda(fa_kernels::flash_fwd(p, current_stream(device)), "fa_kernels flash_fwd");
  return {out, lse};
}

// returns (dq, dk, dv)
std::tuple<Tensor, Tensor, Tensor> flash_bwd(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                             const Tensor& out, const Tensor& lse, double softmax_scale,
                                             bool causal) {
  auto p = attn_params(q, k, v, softmax_scale, causal);
  check_attn(dout, "dout", q);
  check_attn(out, "out", q);
  check_value(same_shape(dout, q) && same_shape(out, q), "dout and out must be shaped like q " + shape_of(q) +
                                                             ", got dout " + shape_of(dout) + ", out " + shape_of(out));
  check_value(lse.defined() && on_device(lse, q.get_device_index()) && lse.is_contiguous() &&
                  lse.scalar_type() == ScalarType::Float && lse.dim() == 3 && lse.size(0) == q.size(0) &&
                  lse.size(1) == q.size(2) && lse.size(2) == q.size(1),
              "lse must be a contiguous float32 (batch, heads, seqlen_q) = [" + num(q.size(0)) + ", " +
                  num(q.size(2)) + ", " + num(q.size(1)) + "] tensor on q's device" +
                  (lse.defined() ? ", got " + describe(lse) : std::string()));
  const int32_t device = q.get_device_index();
  const torch::stable::accelerator::DeviceGuard guard(device);
  if (attn_empty(q, k)) return {zeros_like(q), zeros_like(k), zeros_like(v)};
  // delta = rowsum(dout * out) in float32, laid out like lse
  const std::array<int64_t, 1> last{-1};
  Tensor delta = torch::stable::contiguous(torch::stable::transpose(
      torch::stable::sum(mul(torch::stable::to(dout, ScalarType::Float), torch::stable::to(out, ScalarType::Float)),
                         torch::headeronly::IntHeaderOnlyArrayRef(last.data(), last.size())),
      1, 2));
  Tensor dq = empty({q.size(0), q.size(1), q.size(2), q.size(3)}, q.scalar_type(), q);
  Tensor dk = empty({k.size(0), k.size(1), k.size(2), k.size(3)}, k.scalar_type(), k);
  Tensor dv = empty({v.size(0), v.size(1), v.size(2), v.size(3)}, v.scalar_type(), v);
  p.dout = dout.data_ptr();
  p.dout_s = strides_of(dout);
  p.lse = static_cast<float*>(lse.data_ptr());
  p.delta = static_cast<float*>(delta.data_ptr());
  p.dq = dq.data_ptr();
  p.dk = dk.data_ptr();
  p.dv = dv.data_ptr();
  p.dq_s = strides_of(dq);
  p.dk_s = strides_of(dk);
  p.dv_s = strides_of(dv);
  check_cuda(fa_kernels::flash_bwd(p, current_stream(device)), "fa_kernels flash_bwd");
  return {dq, dk, dv};
}
#endif

}  // namespace

STABLE_TORCH_LIBRARY(fa_kernels, m) {
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

STABLE_TORCH_LIBRARY_IMPL(fa_kernels, CUDA, m) {
  m.impl("rms_norm_fwd", TORCH_BOX(&rms_norm_fwd));
  m.impl("rms_norm_bwd", TORCH_BOX(&rms_norm_bwd));
#ifdef FA_KERNELS_WITH_ATTENTION
  m.impl("flash_fwd", TORCH_BOX(&flash_fwd));
  m.impl("flash_bwd", TORCH_BOX(&flash_bwd));
#endif
}

// `import fa_kernels._C` loads the library, which registers the ops above. Py_LIMITED_API (set by the
// build) keeps this to the stable CPython ABI: PyModule_Create is PyModule_Create2 + the API version.
extern "C" {
#include <Python.h>
PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}
