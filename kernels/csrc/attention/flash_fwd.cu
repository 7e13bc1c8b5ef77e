// Flash attention forward (FlashAttention-2 schedule) for sm_80+: a block of 64 queries per CTA, four
// warps of 16 query rows each (kMT), 64-key tiles of K and V streamed through shared memory with cp.async
// (the next K tile and the current V tile load while the warps compute), online softmax in registers
// in log2 units, tensor-core mma.sync for Q.K^T and P.V with fp32 accumulation.
#include "attention/flash_common.cuh"
#include "attention/flash_fwd_sm90.h"

#include <cmath>

// CTAs an SM the register allocation aims for. Measured on an H200 (benchmarks/README.md): 4 (128
// registers a thread, a few spilled) is 4-7% faster at head dim 64 and 6-9% slower at 128 than 3.
#ifdef FA_FWD_MIN_BLOCKS  // one value for every head dim, for experiments
template <int D> constexpr int min_blocks() { return FA_FWD_MIN_BLOCKS; }
#else
template <int D> constexpr int min_blocks() { return D <= 64 ? 4 : 3; }
#endif

namespace fa_kernels {
namespace {

using namespace attn;

constexpr int kThreads = 128, kWarps = 4;
// 16-row tiles a warp. Two (32 query rows a warp, each K/V fragment feeding two MMAs) measured slower
// on an H200 (205 vs 220 TFLOP/s at head dim 128): 255 registers a thread leave 8 warps an SM, not 12.
constexpr int kMT = 1;
constexpr int kBlockM = kWarps * 16 * kMT;  // 64 queries a CTA
// keys a step (with kMT = 2, head dim 128 needs 32 to fit 255 registers without spills)
template <int D> __host__ __device__ constexpr int block_n() { return D <= 64 || kMT == 1 ? 64 : 32; }

template <int D>
constexpr int fwd_smem_bytes() {
  return (kBlockM + 2 * block_n<D>()) * (D + 8) * 2;
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, min_blocks<D>()) flash_fwd_kernel(FlashParams p) {
  constexpr int LD = D + 8, kBlockN = block_n<D>();
  extern __shared__ __align__(16) unsigned char smem[];
  T* s_q = reinterpret_cast<T*>(smem);
  T* s_k = s_q + kBlockM * LD;
  T* s_v = s_k + kBlockN * LD;

  const int m0 = blockIdx.x * kBlockM;
  const int b = blockIdx.y / p.heads, h = blockIdx.y % p.heads;
  const int hk = h / (p.heads / p.heads_k);
  const int warp = threadIdx.x >> 5;
  const T* q = static_cast<const T*>(p.q) + b * p.q_s.batch + h * p.q_s.head + m0 * p.q_s.row;
  const T* k = static_cast<const T*>(p.k) + b * p.k_s.batch + hk * p.k_s.head;
  const T* v = static_cast<const T*>(p.v) + b * p.v_s.batch + hk * p.v_s.head;
  const int offset = p.seqlen_k - p.seqlen_q;  // causal: query i sees keys j <= i + offset
  const int n_end = p.causal ? min(p.seqlen_k, m0 + kBlockM + offset) : p.seqlen_k;
  const int n_blocks = n_end > 0 ? (n_end + kBlockN - 1) / kBlockN : 0;

  load_tile<T, kBlockM, D, kThreads>(s_q, q, p.q_s.row, p.seqlen_q - m0);
  if (n_blocks > 0) load_tile<T, kBlockN, D, kThreads>(s_k, k, p.k_s.row, p.seqlen_k);
  cp_async_commit();

  float acc[kMT][D / 8][4];
  zero(acc);
  float row_max[kMT][2], row_sum[kMT][2];
#pragma unroll
  for (int m = 0; m < kMT; ++m) {
    row_max[m][0] = row_max[m][1] = -INFINITY;
    row_sum[m][0] = row_sum[m][1] = 0.f;
  }
  const float scale_log2 = p.softmax_scale * kLog2e;
  const int row0 = m0 + warp * 16 * kMT;  // this warp's first query

  for (int nb = 0; nb < n_blocks; ++nb) {
    const int n0 = nb * kBlockN;
    cp_async_wait<0>();
    __syncthreads();  // K tile (and Q) in shared memory
    load_tile<T, kBlockN, D, kThreads>(s_v, v + n0 * p.v_s.row, p.v_s.row, p.seqlen_k - n0);
    cp_async_commit();

    float s[kMT][kBlockN / 8][4];
    zero(s);
    gemm_abt<T, D, kBlockN, kMT>(s, s_q + warp * 16 * kMT * LD, s_k);
    __syncthreads();  // every warp is done with this K tile
    if (nb + 1 < n_blocks) {
      load_tile<T, kBlockN, D, kThreads>(s_k, k + (n0 + kBlockN) * p.k_s.row, p.k_s.row, p.seqlen_k - n0 - kBlockN);
    }
    cp_async_commit();

    const bool edge = n0 + kBlockN > p.seqlen_k || (p.causal && n0 + kBlockN - 1 > row0 + offset);
#pragma unroll
    for (int m = 0; m < kMT; ++m) {
#pragma unroll
      for (int t = 0; t < kBlockN / 8; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = n0 + acc_col(t, e), row = row0 + m * 16 + acc_row(e);
          const bool ok = !edge || (col < p.seqlen_k && (!p.causal || col <= row + offset));
          s[m][t][e] = ok ? s[m][t][e] * scale_log2 : -INFINITY;
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = row_max[m][r];
#pragma unroll
        for (int t = 0; t < kBlockN / 8; ++t) mx = fmaxf(mx, fmaxf(s[m][t][2 * r], s[m][t][2 * r + 1]));
        mx = quad_max(mx);
        const float base = mx == -INFINITY ? 0.f : mx;
        const float alpha = exp2f(row_max[m][r] - base);
        row_max[m][r] = mx;
        float sum = 0.f;
#pragma unroll
        for (int t = 0; t < kBlockN / 8; ++t) {
          s[m][t][2 * r] = exp2f(s[m][t][2 * r] - base);
          s[m][t][2 * r + 1] = exp2f(s[m][t][2 * r + 1] - base);
          sum += s[m][t][2 * r] + s[m][t][2 * r + 1];
        }
        row_sum[m][r] = row_sum[m][r] * alpha + sum;
#pragma unroll
        for (int t = 0; t < D / 8; ++t) {
          acc[m][t][2 * r] *= alpha;
          acc[m][t][2 * r + 1] *= alpha;
        }
      }
    }
    cp_async_wait<1>();
    __syncthreads();  // V tile in shared memory (the next K tile may still be in flight)
    gemm_pb<T, D, kBlockN, kMT>(acc, s, s_v);
  }
  cp_async_wait<0>();

  T* out = static_cast<T*>(p.out) + b * p.out_s.batch + h * p.out_s.head;
  float* lse_row = p.lse + (static_cast<int64_t>(b) * p.heads + h) * p.seqlen_q;
#pragma unroll
  for (int m = 0; m < kMT; ++m) {
    float inv[2], lse[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float total = quad_sum(row_sum[m][r]);
      inv[r] = total > 0.f ? 1.f / total : 0.f;
      lse[r] = total > 0.f ? (row_max[m][r] + log2f(total)) * kLn2 : INFINITY;
    }
    const int first = row0 + m * 16;
    store_rows<T, D>(out + first * p.out_s.row, p.out_s.row, acc[m], inv[0], inv[1], p.seqlen_q - first);
    if ((threadIdx.x & 3) == 0) {
      const int r = first + acc_row(0);
      if (r < p.seqlen_q) lse_row[r] = lse[0];
      if (r + 8 < p.seqlen_q) lse_row[r + 8] = lse[1];
    }
  }
}

template <typename T, int D>
struct Launch {
  static cudaError_t run(const FlashParams& p, cudaStream_t stream) {
    constexpr int bytes = fwd_smem_bytes<D>();
    cudaError_t err = cudaFuncSetAttribute(flash_fwd_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err == cudaSuccess) {  // all the shared memory an SM has, so registers, not shared memory, bound the CTAs
      err = cudaFuncSetAttribute(flash_fwd_kernel<T, D>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    }
    if (err != cudaSuccess) return err;
    const dim3 grid((p.seqlen_q + kBlockM - 1) / kBlockM, p.batch * p.heads);
    flash_fwd_kernel<T, D><<<grid, kThreads, bytes, stream>>>(p);
    return cudaGetLastError();
  }
};

}  // namespace

bool flash_supports_head_dim(int head_dim) { return head_dim_compiled(head_dim); }

cudaError_t flash_fwd(const FlashParams& p, cudaStream_t stream) {
  const cudaError_t hopper = flash_fwd_sm90(p, stream);  // Hopper's own kernel where it applies
  return hopper == cudaErrorNotSupported ? dispatch<Launch>(p, stream) : hopper;
}

}  // namespace fa_kernels
