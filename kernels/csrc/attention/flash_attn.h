// Flash attention forward and backward for sm_80+: a C API with no torch dependency, so the kernels
// compile (and are checked in CI) with plain nvcc and the torch glue in csrc/ops.cpp stays small.
//
// Layouts follow flash_attn: q/out/dq (batch, seqlen_q, heads, head_dim), k/v/dk/dv (batch, seqlen_k,
// heads_k, head_dim), any strides with the last dimension contiguous and 16-byte aligned rows;
// lse and delta (batch, heads, seqlen_q) contiguous float32. Causal masking is aligned to the
// bottom-right corner (query i sees key j iff j <= i + seqlen_k - seqlen_q); a row that sees no key
// gives out 0 and lse +inf.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace fa_kernels {

enum class AttnDType : int { kFloat16 = 1, kBFloat16 = 2 };

struct Strides {  // in elements
  int64_t batch, row, head;
};

struct FlashParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;
  // backward only
  const void* dout;
  const float* delta;  // rowsum(dout * out), (batch, heads, seqlen_q)
  void* dq;
  void* dk;
  void* dv;
  Strides q_s, k_s, v_s, out_s, dout_s, dq_s, dk_s, dv_s;
  int batch, heads, heads_k, seqlen_q, seqlen_k, head_dim;
  float softmax_scale;
  bool causal;
  AttnDType dtype;
};

// Head dims with a compiled kernel; anything else is refused (the Python side falls back to Triton).
bool flash_supports_head_dim(int head_dim);
cudaError_t flash_fwd(const FlashParams& p, cudaStream_t stream);
// dq, dk, dv from dout, delta and the forward's lse; no atomics (dq and dk/dv come from two kernels)
cudaError_t flash_bwd(const FlashParams& p, cudaStream_t stream);

}  // namespace fa_kernels
