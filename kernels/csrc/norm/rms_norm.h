// Fused dropout + residual add + RMSNorm, forward and backward: a C API with no torch dependency, so
// the kernels compile (and are checked in CI) with plain nvcc, and the torch glue stays small.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace fa_kernels {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

struct RmsNormFwdParams {
  const void* x;         // [rows, cols], dtype `dtype`, row stride x_stride
  const void* residual;  // nullable, dtype `residual_dtype`
  const void* weight;    // nullable, [cols], dtype `weight_dtype` (x's dtype or float32 under AMP)
  void* y;               // [rows, cols], dtype `out_dtype`
  void* residual_out;    // nullable: s = dropout(x) + residual, dtype `residual_dtype`
  uint8_t* keep_out;     // nullable: the dropout keep mask, [rows, cols]
  float* rstd;           // [rows]
  int64_t rows, cols;
  int64_t x_stride, residual_stride, y_stride, residual_out_stride;
  DType dtype, residual_dtype, weight_dtype, out_dtype;
  float eps;
  float dropout_p;
  uint64_t seed;
};

struct RmsNormBwdParams {
  const void* s;         // the saved pre-norm sum, dtype `residual_dtype` (x itself when nothing was added)
  const void* dy;        // [rows, cols], dtype `dy_dtype` (the forward's out_dtype)
  const void* dresidual_out;  // nullable: gradient flowing into residual_out (prenorm), `residual_dtype`
  const void* weight;    // nullable, dtype `weight_dtype`
  const float* rstd;
  void* dx;              // dtype `dtype` (x's)
  void* dresidual;       // nullable: written only when it differs from dx (dropout, dtype change)
  float* dweight_partial;  // nullable: [partial_rows, cols], reduced by rms_norm_dweight
  int64_t rows, cols;
  int64_t s_stride, dy_stride, dresidual_out_stride, dx_stride, dresidual_stride;
  DType dtype, residual_dtype, weight_dtype, dy_dtype;
  float dropout_p;
  uint64_t seed;
  int partial_rows;      // blocks of the backward grid (see rms_norm_bwd_blocks)
};

// Mixed precision: x (and dx) in `dtype`; the residual stream in `dtype` or float32; weight, y and dy each
// in any of the three (float32 weights next to bfloat16 activations is what torch.autocast produces).
// Anything else returns cudaErrorInvalidValue.

// Largest supported row: one row lives in registers.
constexpr int64_t kMaxCols = 32768;

int rms_norm_bwd_blocks(int64_t rows, int sm_count);
cudaError_t rms_norm_fwd(const RmsNormFwdParams& p, cudaStream_t stream);
cudaError_t rms_norm_bwd(const RmsNormBwdParams& p, cudaStream_t stream);
// dweight[c] = sum over partial rows of dweight_partial[:, c], cast to `dtype`
cudaError_t rms_norm_dweight(const float* partial, int partial_rows, int64_t cols, void* dweight,
                             DType dtype, cudaStream_t stream);

}  // namespace fa_kernels
