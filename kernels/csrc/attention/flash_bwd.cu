// Flash attention backward for sm_80+, without atomics (deterministic): two kernels that each
// recompute the probabilities P = exp(scale * Q.K^T - lse) from the forward's lse.
//   dK/dV: a CTA per 64 keys of one kv head; each warp owns 16 keys and walks over every query block
//          of every query head that shares the kv head (GQA): S^T = K.Q^T, dV += P^T.dO,
//          dP^T = V.dO^T, dS^T = P^T * (dP^T - delta), dK += dS^T.Q.
//   dQ:    a CTA per 64 queries; each warp owns 16 queries and walks over the key blocks:
//          S = Q.K^T, dP = dO.V^T, dS = P * (dP - delta), dQ += dS.K.
// delta = rowsum(dO * O) comes from the caller. Tiles are single-buffered so the shared memory fits
// sm_86/sm_89's 99 KB as well as sm_80/sm_90. On Hopper, FA_KERNELS_SM90_BWD=1 runs the sm_90a kernels
// (flash_bwd_sm90.cu) instead where they apply.
#include "attention/flash_common.cuh"
#include "attention/flash_bwd_sm90.h"

#include <cmath>

namespace fa_kernels {
namespace {

using namespace attn;

constexpr int kThreads = 128, kRows = 64;  // rows a CTA owns (16 per warp)

// Columns of the other side per step: fewer for head dim 128, whose two 16 x 128 accumulators
// (dK, dV) already hold 128 registers a thread.
template <int D> __host__ __device__ constexpr int inner_block() { return D <= 64 ? 64 : 32; }

template <int D>
constexpr int smem_bytes() {
  return 2 * (kRows + inner_block<D>()) * (D + 8) * 2 + 2 * inner_block<D>() * 4;
}

struct Scales {
  float log2;    // softmax_scale * log2(e): logits to exp2 units
  float scale;   // softmax_scale
};

__device__ __forceinline__ bool visible(const FlashParams& p, int query, int key) {
  return query < p.seqlen_q && key < p.seqlen_k && (!p.causal || key <= query + p.seqlen_k - p.seqlen_q);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) flash_bwd_dkdv_kernel(FlashParams p) {
  constexpr int LD = D + 8, BM = inner_block<D>();
  extern __shared__ __align__(16) unsigned char smem[];
  T* s_k = reinterpret_cast<T*>(smem);
  T* s_v = s_k + kRows * LD;
  T* s_q = s_v + kRows * LD;
  T* s_do = s_q + BM * LD;
  float* s_lse = reinterpret_cast<float*>(s_do + BM * LD);  // lse * log2(e)
  float* s_delta = s_lse + BM;

  const int n0 = blockIdx.x * kRows;
  const int b = blockIdx.y / p.heads_k, hk = blockIdx.y % p.heads_k;
  const int group = p.heads / p.heads_k;
  const int warp = threadIdx.x >> 5;
  const int offset = p.seqlen_k - p.seqlen_q;
  const float scale_log2 = p.softmax_scale * kLog2e;

  load_tile<T, kRows, D, kThreads>(s_k, static_cast<const T*>(p.k) + b * p.k_s.batch + hk * p.k_s.head + n0 * p.k_s.row,
                                   p.k_s.row, p.seqlen_k - n0);
  load_tile<T, kRows, D, kThreads>(s_v, static_cast<const T*>(p.v) + b * p.v_s.batch + hk * p.v_s.head + n0 * p.v_s.row,
                                   p.v_s.row, p.seqlen_k - n0);
  cp_async_commit();

  float dk[1][D / 8][4], dv[1][D / 8][4];
  zero(dk);
  zero(dv);
  const int key0 = n0 + warp * 16;  // this warp's first key
  // causal: the first query that sees key n0 is n0 - offset
  const int m_begin = p.causal ? max(0, (n0 - offset) / BM * BM) : 0;
  const int m_blocks = (p.seqlen_q + BM - 1) / BM;

  for (int hq = hk * group; hq < (hk + 1) * group; ++hq) {
    const T* q = static_cast<const T*>(p.q) + b * p.q_s.batch + hq * p.q_s.head;
    const T* dout = static_cast<const T*>(p.dout) + b * p.dout_s.batch + hq * p.dout_s.head;
    const int64_t row_base = (static_cast<int64_t>(b) * p.heads + hq) * p.seqlen_q;
    for (int m0 = m_begin; m0 < m_blocks * BM; m0 += BM) {
      load_tile<T, BM, D, kThreads>(s_q, q + m0 * p.q_s.row, p.q_s.row, p.seqlen_q - m0);
      load_tile<T, BM, D, kThreads>(s_do, dout + m0 * p.dout_s.row, p.dout_s.row, p.seqlen_q - m0);
      cp_async_commit();
      for (int i = threadIdx.x; i < BM; i += kThreads) {
        const bool ok = m0 + i < p.seqlen_q;
        s_lse[i] = ok ? p.lse[row_base + m0 + i] * kLog2e : INFINITY;
        s_delta[i] = ok ? p.delta[row_base + m0 + i] : 0.f;
      }
      cp_async_wait<0>();
      __syncthreads();

      float st[1][BM / 8][4], dpt[1][BM / 8][4];
      zero(st);
      zero(dpt);
      gemm_abt<T, D, BM, 1>(st, s_k + warp * 16 * LD, s_q);
      gemm_abt<T, D, BM, 1>(dpt, s_v + warp * 16 * LD, s_do);
#pragma unroll
      for (int t = 0; t < BM / 8; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = acc_col(t, e), key = key0 + acc_row(e);
          const float prob = visible(p, m0 + i, key) ? exp2f(st[0][t][e] * scale_log2 - s_lse[i]) : 0.f;
          st[0][t][e] = prob;
          dpt[0][t][e] = prob * (dpt[0][t][e] - s_delta[i]);
        }
      }
      gemm_pb<T, D, BM, 1>(dv, st, s_do);
      gemm_pb<T, D, BM, 1>(dk, dpt, s_q);
      __syncthreads();  // every warp is done with this Q / dO tile
    }
  }
  T* dk_out = static_cast<T*>(p.dk) + b * p.dk_s.batch + hk * p.dk_s.head + key0 * p.dk_s.row;
  T* dv_out = static_cast<T*>(p.dv) + b * p.dv_s.batch + hk * p.dv_s.head + key0 * p.dv_s.row;
  store_rows<T, D>(dk_out, p.dk_s.row, dk[0], p.softmax_scale, p.softmax_scale, p.seqlen_k - key0);
  store_rows<T, D>(dv_out, p.dv_s.row, dv[0], 1.f, 1.f, p.seqlen_k - key0);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) flash_bwd_dq_kernel(FlashParams p) {
  constexpr int LD = D + 8, BN = inner_block<D>();
  extern __shared__ __align__(16) unsigned char smem[];
  T* s_q = reinterpret_cast<T*>(smem);
  T* s_do = s_q + kRows * LD;
  T* s_k = s_do + kRows * LD;
  T* s_v = s_k + BN * LD;

  const int m0 = blockIdx.x * kRows;
  const int b = blockIdx.y / p.heads, h = blockIdx.y % p.heads;
  const int hk = h / (p.heads / p.heads_k);
  const int warp = threadIdx.x >> 5;
  const int offset = p.seqlen_k - p.seqlen_q;
  const float scale_log2 = p.softmax_scale * kLog2e;
  const T* k = static_cast<const T*>(p.k) + b * p.k_s.batch + hk * p.k_s.head;
  const T* v = static_cast<const T*>(p.v) + b * p.v_s.batch + hk * p.v_s.head;

  load_tile<T, kRows, D, kThreads>(s_q, static_cast<const T*>(p.q) + b * p.q_s.batch + h * p.q_s.head + m0 * p.q_s.row,
                                   p.q_s.row, p.seqlen_q - m0);
  load_tile<T, kRows, D, kThreads>(
      s_do, static_cast<const T*>(p.dout) + b * p.dout_s.batch + h * p.dout_s.head + m0 * p.dout_s.row, p.dout_s.row,
      p.seqlen_q - m0);
  cp_async_commit();

  const int row0 = m0 + warp * 16;
  const int64_t row_base = (static_cast<int64_t>(b) * p.heads + h) * p.seqlen_q;
  float lse2[2], delta[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + acc_row(2 * r);
    lse2[r] = row < p.seqlen_q ? p.lse[row_base + row] * kLog2e : INFINITY;
    delta[r] = row < p.seqlen_q ? p.delta[row_base + row] : 0.f;
  }
  float dq[1][D / 8][4];
  zero(dq);
  const int n_end = p.causal ? min(p.seqlen_k, m0 + kRows + offset) : p.seqlen_k;

  for (int n0 = 0; n0 < n_end; n0 += BN) {
    load_tile<T, BN, D, kThreads>(s_k, k + n0 * p.k_s.row, p.k_s.row, p.seqlen_k - n0);
    load_tile<T, BN, D, kThreads>(s_v, v + n0 * p.v_s.row, p.v_s.row, p.seqlen_k - n0);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    float s[1][BN / 8][4], dp[1][BN / 8][4];
    zero(s);
    zero(dp);
    gemm_abt<T, D, BN, 1>(s, s_q + warp * 16 * LD, s_k);
    gemm_abt<T, D, BN, 1>(dp, s_do + warp * 16 * LD, s_v);
#pragma unroll
    for (int t = 0; t < BN / 8; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = row0 + acc_row(e), key = n0 + acc_col(t, e);
        const float prob = visible(p, row, key) ? exp2f(s[0][t][e] * scale_log2 - lse2[e >> 1]) : 0.f;
        s[0][t][e] = prob * (dp[0][t][e] - delta[e >> 1]);
      }
    }
    gemm_pb<T, D, BN, 1>(dq, s, s_k);
    __syncthreads();  // every warp is done with this K / V tile
  }
  cp_async_wait<0>();
  T* dq_out = static_cast<T*>(p.dq) + b * p.dq_s.batch + h * p.dq_s.head + row0 * p.dq_s.row;
  store_rows<T, D>(dq_out, p.dq_s.row, dq[0], p.softmax_scale, p.softmax_scale, p.seqlen_q - row0);
}

template <typename T, int D>
struct Launch {
  static cudaError_t run(const FlashParams& p, cudaStream_t stream) {
    constexpr int bytes = smem_bytes<D>();
    cudaError_t err = cudaFuncSetAttribute(flash_bwd_dkdv_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err == cudaSuccess) {
      err = cudaFuncSetAttribute(flash_bwd_dq_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    }
    if (err != cudaSuccess) return err;
    flash_bwd_dkdv_kernel<T, D>
        <<<dim3((p.seqlen_k + kRows - 1) / kRows, p.batch * p.heads_k), kThreads, bytes, stream>>>(p);
    flash_bwd_dq_kernel<T, D><<<dim3((p.seqlen_q + kRows - 1) / kRows, p.batch * p.heads), kThreads, bytes, stream>>>(p);
    return cudaGetLastError();
  }
};

}  // namespace

cudaError_t flash_bwd(const FlashParams& p, cudaStream_t stream) {
  const cudaError_t hopper = flash_bwd_sm90(p, stream);  // Hopper's own kernels where switched on and they apply
  return hopper == cudaErrorNotSupported ? dispatch<Launch>(p, stream) : hopper;
}

}  // namespace fa_kernels
