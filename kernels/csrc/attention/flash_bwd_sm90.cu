// Flash attention backward for Hopper (sm_90a): the sm_80 backward's two-kernel deterministic design
// (flash_bwd.cu: no atomics, every gradient row summed by the one CTA that owns it) on the forward's
// machinery (flash_fwd_sm90.cu): TMA loads into 128-byte-swizzled shared memory, wgmma products, one
// producer warpgroup and two consumer warpgroups of 64 rows each. Our own code, after FlashAttention-3's
// recipe.
//
//   dK/dV: a CTA owns kRows keys of one kv head. K and V are loaded once; the producer streams Q and dO
//          tiles of kInner queries (and their lse and delta) of every query block of every query head of
//          the GQA group through a kStages ring. Per step a consumer warpgroup computes
//          S^T = K.Q^T and dP^T = V.dO^T (wgmma, both operands in shared memory),
//          P^T = 2^(S^T * scale * log2(e) - lse * log2(e)), dS^T = P^T * (dP^T - delta) (registers),
//          dV += P^T.dO and dK += dS^T.Q (wgmma, P^T and dS^T from registers, dO and Q head_dim-major).
//          Causal: query blocks no key of the CTA is visible to are never loaded.
//   dQ:    a CTA owns kRows queries of one head. Q and dO are loaded once; the producer streams K and V
//          tiles: S = Q.K^T, dP = dO.V^T, dS = P * (dP - delta), dQ += dS.K.
// delta = rowsum(dO * O) comes from the caller, as for the sm_80 kernels. Tensor maps are 4-D over the
// tensors' real strides, so rows past a sequence's end arrive as zeros; the only masks are the causal
// diagonal and, in dQ, keys past seqlen_k (zero keys still have a probability), both only on edge tiles.
//
// The consumers' schedule is serial: each step's products are waited for before the next step, and the
// two consumer warpgroups overlap each other (one's exponentials under the other's products).
//
// Compiled only for sm_90a; in any other device pass the kernels are empty and have no static shared
// memory, which is how the host side tells that the image it would launch is the real one.
#include "attention/flash_bwd_sm90.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "attention/flash_common.cuh"
#include "attention/sm90_host.h"

#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FA_SM90_DEVICE 1
#include "attention/sm90_pipeline.cuh"
#include "attention/sm90_wgmma.cuh"
#endif

namespace fa_kernels {
namespace {

constexpr int kRows = 128;    // rows a CTA owns (keys in dK/dV, queries in dQ): two warpgroups of 64
constexpr int kStages = 2;    // depth of the ring of streamed tiles
constexpr int kThreads = 384;  // producer + 2 consumers
// Registers a thread after setmaxnreg (128 x (40 + 2 x 232) <= 64K): the producer's 40, not the forward's
// 24, because the dK/dV kernel's stats warp walks 64-bit addresses (24 spilled there).
constexpr int kProducerRegs = 40, kConsumerRegs = 232;

// Rows of the other side a step: 64 at head dim 128, where dK and dV alone take 128 fp32 registers a
// thread, and the scores of 128 rows would not fit beside them.
template <int D> __host__ __device__ constexpr int inner() { return D == 64 ? 128 : 64; }

template <int D>
struct Layout {  // dynamic shared memory, byte offsets from a 1024-aligned base (the 128B swizzle's period)
  static constexpr int kInner = inner<D>();
  static constexpr int own_bytes = kRows * D * 2;   // each of the two tiles loaded once: K, V or Q, dO
  static constexpr int step_bytes = kInner * D * 2;  // each of the two tiles a step streams
  static constexpr int own1_off = own_bytes;          // V (dK/dV) or dO (dQ)
  static constexpr int a_off = 2 * own_bytes;         // ring of Q (dK/dV) or K (dQ)
  static constexpr int b_off = a_off + kStages * step_bytes;  // ring of dO (dK/dV) or V (dQ)
  static constexpr int stats_off = b_off + kStages * step_bytes;  // dK/dV: lse * log2(e), delta a stage
  static constexpr int stats_floats = 2 * kInner;
  static constexpr int bytes = stats_off + kStages * stats_floats * 4 + 1024;  // + room to align the base
};

#ifdef FA_SM90_DEVICE
constexpr int kConsumerWarps = 8;         // arrivals an "empty" barrier waits for
constexpr int kStatsLanes = 32;           // dK/dV: warp 1 copies lse and delta and arrives on "full"
constexpr int kBarriers = 1 + 2 * kStages;

using attn::kLog2e;
using attn::Mma;
using namespace sm90;  // the pipeline's building blocks (sm90_pipeline.cuh)

struct Bars {  // shared-memory addresses of the mbarriers
  uint32_t base;
  __device__ uint32_t own_full() const { return base; }  // the two tiles loaded once
  __device__ uint32_t full(int s) const { return base + 8 * (1 + s); }
  __device__ uint32_t empty(int s) const { return base + 8 * (1 + kStages + s); }
};

__device__ __forceinline__ int stage(int step) { return step % kStages; }
__device__ __forceinline__ uint32_t parity(int step) { return (step / kStages) & 1; }

// The rows a CTA works on and the steps it streams. dK/dV: keys n0.. of kv head hk, then per step a block
// of queries of one query head of the group (heads first, then blocks). dQ: queries m0.. of head h, then
// per step a block of keys.
template <int D>
struct Work {
  static constexpr int kInner = inner<D>();
  int own0, b, head, steps;
  int group, m_begin, m_blocks;  // dK/dV only

  __device__ int q_head(int step) const { return head * group + step / m_blocks; }
  __device__ int m0(int step) const { return m_begin + (step % m_blocks) * kInner; }
};

template <int D>
__device__ Work<D> dkdv_work(const FlashParams& p) {
  constexpr int kInner = inner<D>();
  Work<D> w;
  w.own0 = blockIdx.x * kRows;
  w.b = blockIdx.y / p.heads_k;
  w.head = blockIdx.y % p.heads_k;
  w.group = p.heads / p.heads_k;
  // causal: key n0 is first seen by query n0 - offset; earlier query blocks see none of the CTA's keys
  const int offset = p.seqlen_k - p.seqlen_q;
  w.m_begin = p.causal ? max(0, w.own0 - offset) / kInner * kInner : 0;
  w.m_blocks = w.m_begin < p.seqlen_q ? (p.seqlen_q - w.m_begin + kInner - 1) / kInner : 0;
  w.steps = w.group * w.m_blocks;
  return w;
}

template <int D>
__device__ Work<D> dq_work(const FlashParams& p) {
  constexpr int kInner = inner<D>();
  Work<D> w;
  // causal: the last query blocks see the most keys and start first
  const int m_block = p.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
  w.own0 = m_block * kRows;
  w.b = blockIdx.y / p.heads;
  w.head = blockIdx.y % p.heads;
  const int n_end = p.causal ? min(p.seqlen_k, w.own0 + kRows + p.seqlen_k - p.seqlen_q) : p.seqlen_k;
  w.steps = n_end > 0 ? (n_end + kInner - 1) / kInner : 0;
  w.group = 1;
  w.m_begin = 0;
  w.m_blocks = 1;
  return w;
}

// -- producers ---------------------------------------------------------------------------------------

// One thread: the CTA's own two tiles (kRows rows from w.own0 of head w.head) once, then the two tiles of
// every step (kInner rows from at(j).x of head at(j).y) into the ring. Nothing at all when there is no
// step (a CTA must not exit with a copy in flight).
template <int D, typename At>
__device__ void produce(const CUtensorMap* own_a, const CUtensorMap* own_b, const CUtensorMap* step_a,
                        const CUtensorMap* step_b, uint32_t smem, Bars bars, const Work<D>& w, At at) {
  using L = Layout<D>;
  if (w.steps == 0) return;
  mbar_expect_tx(bars.own_full(), 2 * L::own_bytes);
  load_tile<D>(smem, own_a, bars.own_full(), kRows, w.own0, w.head, w.b);
  load_tile<D>(smem + L::own1_off, own_b, bars.own_full(), kRows, w.own0, w.head, w.b);
  for (int j = 0; j < w.steps; ++j) {
    const int s = stage(j);
    mbar_wait(bars.empty(s), parity(j) ^ 1);
    mbar_expect_tx(bars.full(s), 2 * L::step_bytes);
    const int2 rows_head = at(j);
    load_tile<D>(smem + L::a_off + s * L::step_bytes, step_a, bars.full(s), L::kInner, rows_head.x, rows_head.y, w.b);
    load_tile<D>(smem + L::b_off + s * L::step_bytes, step_b, bars.full(s), L::kInner, rows_head.x, rows_head.y, w.b);
  }
}

// dK/dV: K and V once, then Q and dO of every step (every query block of every query head of the group).
template <int D>
__device__ void produce_dkdv(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                             const CUtensorMap* tdo, uint32_t smem, Bars bars, const Work<D>& w) {
  produce<D>(tk, tv, tq, tdo, smem, bars, w, [&w](int j) { return make_int2(w.m0(j), w.q_head(j)); });
}

// dK/dV, one warp: lse (times log2(e)) and delta of every step's queries into the stage's stats, then an
// arrival on the stage's "full" barrier (which also waits for this warp: 1 + 32 arrivals). A query past
// seqlen_q gets lse +inf, hence P = 0 and dS = 0, whatever its (zero) Q and dO rows give.
template <int D>
__device__ void produce_stats(const FlashParams& p, float* stats, Bars bars, const Work<D>& w) {
  using L = Layout<D>;
  const int lane = threadIdx.x & 31;
  for (int j = 0; j < w.steps; ++j) {
    const int s = stage(j), m0 = w.m0(j);
    mbar_wait(bars.empty(s), parity(j) ^ 1);
    const int64_t row0 = (static_cast<int64_t>(w.b) * p.heads + w.q_head(j)) * p.seqlen_q;
    float* lse2 = stats + s * L::stats_floats;
    float* delta = lse2 + L::kInner;
    for (int i = lane; i < L::kInner; i += 32) {
      const bool ok = m0 + i < p.seqlen_q;
      lse2[i] = ok ? p.lse[row0 + m0 + i] * kLog2e : INFINITY;
      delta[i] = ok ? p.delta[row0 + m0 + i] : 0.f;
    }
    mbar_arrive(bars.full(s));  // release: the stores above are visible to the consumers' acquiring wait
  }
}

// dQ: Q and dO once, then K and V of every step (the kv head's key blocks).
template <int D>
__device__ void produce_dq(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                           const CUtensorMap* tdo, uint32_t smem, Bars bars, const Work<D>& w, int head_k) {
  produce<D>(tq, tdo, tk, tv, smem, bars, w, [head_k](int j) { return make_int2(j * Layout<D>::kInner, head_k); });
}

// -- consumers ---------------------------------------------------------------------------------------

// Accumulator element i of an m64nN product: n8 block i/4, column 8(i/4) + 2(lane%4) + (i&1), row
// lane/4 (+8 for i%4 >= 2) of the warp's 16.
__device__ __forceinline__ int acc_col(int i) { return 8 * (i / 4) + 2 * (threadIdx.x & 3) + (i & 1); }
__device__ __forceinline__ int acc_row8(int i) { return (i & 2) ? 8 : 0; }

// A score-shaped accumulator rounded to T as the A operand of the next product: k-block kk is n8 blocks
// 2kk and 2kk+1 (the RS A fragment has the accumulator's layout).
template <typename T, int N>
__device__ __forceinline__ void to_operand(const float (&acc)[N / 2], uint32_t (&a)[N / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < N / 16; ++kk) {
#pragma unroll
    for (int e = 0; e < 4; ++e) a[kk][e] = Mma<T>::pack(acc[8 * kk + 2 * e], acc[8 * kk + 2 * e + 1]);
  }
}

// One arrival a warp, after all its lanes are done with the stage: the stats are read by every lane with
// plain loads, which lane 0's arrival alone does not order (compute-sanitizer racecheck flagged them).
__device__ __forceinline__ void release(uint32_t empty_bar) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0) mbar_arrive(empty_bar);
}

// Writes 64 rows x D of fp32 accumulators (times scale) as T, rows < valid; `row` is the thread's first.
// Two score-like products over head_dim in one wgmma group, all four operands K-major in shared memory:
// c0 = A0.B0^T and c1 = A1.B1^T (descriptors: A over kRows rows, B over N); the caller waits.
template <int N, bool kBf16, int D>
__device__ __forceinline__ void issue_two_ss(float (&c0)[N / 2], uint32_t a0, uint32_t b0, float (&c1)[N / 2],
                                             uint32_t a1, uint32_t b1) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    sm90::Wgmma<N, kBf16>::ss(c0, desc_k_major(a0, kRows, kk), desc_k_major(b0, N, kk), kk > 0);
  }
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    sm90::Wgmma<N, kBf16>::ss(c1, desc_k_major(a1, kRows, kk), desc_k_major(b1, N, kk), kk > 0);
  }
  wgmma_commit();
}

template <typename T, int D>
__device__ __forceinline__ void store_rows(T* dst, int64_t stride, const float (&acc)[D / 2], float scale, int row,
                                           int valid) {
  const int col0 = 2 * (threadIdx.x & 3);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (row + 8 * r >= valid) continue;
    T* out = dst + static_cast<int64_t>(row + 8 * r) * stride + col0;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      const uint32_t pair = Mma<T>::pack(acc[4 * j + 2 * r] * scale, acc[4 * j + 2 * r + 1] * scale);
      *reinterpret_cast<uint32_t*>(out + 8 * j) = pair;
    }
  }
}

// One dK/dV consumer warpgroup: 64 keys.
template <typename T, int D>
struct DkdvConsumer {
  using L = Layout<D>;
  static constexpr int kI = L::kInner;
  static constexpr bool kBf16 = std::is_same<T, __nv_bfloat16>::value;
  const FlashParams& p;
  uint32_t smem;
  Bars bars;
  const float* stats;
  int cw, last_key, row, offset;  // this warpgroup's last key, this thread's keys (row, row + 8)
  float scale_log2;
  float dk[D / 2], dv[D / 2];

  __device__ DkdvConsumer(const FlashParams& params, uint32_t smem_base, Bars b, const float* st, const Work<D>& w,
                          int warpgroup)
      : p(params), smem(smem_base), bars(b), stats(st), cw(warpgroup) {
    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    last_key = w.own0 + cw * 64 + 63;
    row = w.own0 + cw * 64 + warp * 16 + (lane >> 2);
    offset = p.seqlen_k - p.seqlen_q;
    scale_log2 = p.softmax_scale * kLog2e;
#pragma unroll
    for (int i = 0; i < D / 2; ++i) dk[i] = dv[i] = 0.f;
  }

  __device__ uint32_t k_tile() const { return smem + cw * 64 * 128; }  // 64 rows in each column block
  __device__ uint32_t v_tile() const { return smem + L::own1_off + cw * 64 * 128; }
  __device__ uint32_t q_tile(int j) const { return smem + L::a_off + stage(j) * L::step_bytes; }
  __device__ uint32_t do_tile(int j) const { return smem + L::b_off + stage(j) * L::step_bytes; }

  // S^T = K.Q^T and dP^T = V.dO^T of step j, one wgmma group; the caller waits.
  __device__ void issue_scores(float (&st)[kI / 2], float (&dpt)[kI / 2], int j) {
    issue_two_ss<kI, kBf16, D>(st, k_tile(), q_tile(j), dpt, v_tile(), do_tile(j));
  }
  // dV += P^T.dO and dK += dS^T.Q of step j (dO and Q as head_dim-major B operands), one wgmma group.
  __device__ void issue_grads(const uint32_t (&pa)[kI / 16][4], const uint32_t (&da)[kI / 16][4], int j) {
#pragma unroll
    for (int kk = 0; kk < kI / 16; ++kk) sm90::Wgmma<D, kBf16>::rs(dv, pa[kk], desc_mn_major(do_tile(j), kI, kk), 1);
#pragma unroll
    for (int kk = 0; kk < kI / 16; ++kk) sm90::Wgmma<D, kBf16>::rs(dk, da[kk], desc_mn_major(q_tile(j), kI, kk), 1);
    wgmma_commit();
  }
  // In place: S^T becomes P^T and dP^T becomes dS^T. Queries (columns) m0..; causal hides key > query +
  // offset, only in a tile that reaches the diagonal. The stage's stats are read before it is released.
  __device__ void probs_and_dscores(float (&st)[kI / 2], float (&dpt)[kI / 2], int j, int m0) const {
    const float* lse2 = stats + stage(j) * L::stats_floats;
    const float* delta = lse2 + kI;
    const bool edge = p.causal && m0 + offset < last_key;
#pragma unroll
    for (int i = 0; i < kI / 2; i += 2) {
      const int c = acc_col(i);
      const float2 l = *reinterpret_cast<const float2*>(lse2 + c);
      const float2 d = *reinterpret_cast<const float2*>(delta + c);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float prob = exp2f(fmaf(st[i + e], scale_log2, -(e ? l.y : l.x)));
        if (edge && row + acc_row8(i) > m0 + c + e + offset) prob = 0.f;
        st[i + e] = prob;
        dpt[i + e] = prob * (dpt[i + e] - (e ? d.y : d.x));
      }
    }
  }

  // One step after the other, each product waited for before the next.
  __device__ void run(const Work<D>& w) {
    for (int j = 0; j < w.steps; ++j) {
      float st[kI / 2], dpt[kI / 2];
      uint32_t pa[kI / 16][4], da[kI / 16][4];
      mbar_wait(bars.full(stage(j)), parity(j));
      wgmma_fence();
      issue_scores(st, dpt, j);
      wgmma_wait<0>();
      fence_regs(st);
      fence_regs(dpt);
      probs_and_dscores(st, dpt, j, w.m0(j));
      to_operand<T, kI>(st, pa);
      to_operand<T, kI>(dpt, da);
      wgmma_fence();
      issue_grads(pa, da, j);
      wgmma_wait<0>();
      fence_regs(dv);
      fence_regs(dk);
      fence_regs(pa);  // the products read pa and da until the wait
      fence_regs(da);
      release(bars.empty(stage(j)));
    }
  }

  // dK = scale * dS^T.Q, dV as summed; keys past seqlen_k are not written.
  __device__ void store(const Work<D>& w) const {
    T* dk_out = static_cast<T*>(p.dk) + w.b * p.dk_s.batch + w.head * p.dk_s.head;
    T* dv_out = static_cast<T*>(p.dv) + w.b * p.dv_s.batch + w.head * p.dv_s.head;
    store_rows<T, D>(dk_out, p.dk_s.row, dk, p.softmax_scale, row, p.seqlen_k);
    store_rows<T, D>(dv_out, p.dv_s.row, dv, 1.f, row, p.seqlen_k);
  }
};

// One dQ consumer warpgroup: 64 queries.
template <typename T, int D>
struct DqConsumer {
  using L = Layout<D>;
  static constexpr int kI = L::kInner;
  static constexpr bool kBf16 = std::is_same<T, __nv_bfloat16>::value;
  const FlashParams& p;
  uint32_t smem;
  Bars bars;
  int cw, first_row, row, offset;  // this warpgroup's first query, this thread's queries (row, row + 8)
  float scale_log2;
  float lse2[2], delta[2];
  float dq[D / 2];

  __device__ DqConsumer(const FlashParams& params, uint32_t smem_base, Bars b, const Work<D>& w, int warpgroup)
      : p(params), smem(smem_base), bars(b), cw(warpgroup) {
    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    first_row = w.own0 + cw * 64;
    row = first_row + warp * 16 + (lane >> 2);
    offset = p.seqlen_k - p.seqlen_q;
    scale_log2 = p.softmax_scale * kLog2e;
    const int64_t row0 = (static_cast<int64_t>(w.b) * p.heads + w.head) * p.seqlen_q;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const bool ok = row + 8 * r < p.seqlen_q;  // a row past the end gets P = 0 (and is not written)
      lse2[r] = ok ? p.lse[row0 + row + 8 * r] * kLog2e : INFINITY;
      delta[r] = ok ? p.delta[row0 + row + 8 * r] : 0.f;
    }
#pragma unroll
    for (int i = 0; i < D / 2; ++i) dq[i] = 0.f;
  }

  __device__ uint32_t q_tile() const { return smem + cw * 64 * 128; }
  __device__ uint32_t do_tile() const { return smem + L::own1_off + cw * 64 * 128; }
  __device__ uint32_t k_tile(int j) const { return smem + L::a_off + stage(j) * L::step_bytes; }
  __device__ uint32_t v_tile(int j) const { return smem + L::b_off + stage(j) * L::step_bytes; }

  // S = Q.K^T and dP = dO.V^T of step j, one wgmma group.
  __device__ void issue_scores(float (&s)[kI / 2], float (&dp)[kI / 2], int j) {
    issue_two_ss<kI, kBf16, D>(s, q_tile(), k_tile(j), dp, do_tile(), v_tile(j));
  }
  // dQ += dS.K of step j (K as the head_dim-major B operand).
  __device__ void issue_grad(const uint32_t (&da)[kI / 16][4], int j) {
#pragma unroll
    for (int kk = 0; kk < kI / 16; ++kk) sm90::Wgmma<D, kBf16>::rs(dq, da[kk], desc_mn_major(k_tile(j), kI, kk), 1);
    wgmma_commit();
  }
  // In place: S becomes dS = P * (dP - delta). Keys past seqlen_k (zero rows of K: their scores are 0,
  // not -inf) and, causal, keys past the diagonal are hidden, only in a tile that reaches an edge.
  __device__ void dscores(float (&s)[kI / 2], const float (&dp)[kI / 2], int j) const {
    const int n0 = j * kI;
    const bool edge = n0 + kI > p.seqlen_k || (p.causal && n0 + kI - 1 > first_row + offset);
#pragma unroll
    for (int i = 0; i < kI / 2; ++i) {
      const int r = acc_row8(i) / 8, key = n0 + acc_col(i);
      float prob = exp2f(fmaf(s[i], scale_log2, -lse2[r]));
      if (edge && (key >= p.seqlen_k || (p.causal && key > row + 8 * r + offset))) prob = 0.f;
      s[i] = prob * (dp[i] - delta[r]);
    }
  }

  __device__ void run(const Work<D>& w) {
    for (int j = 0; j < w.steps; ++j) {
      float s[kI / 2], dp[kI / 2];
      uint32_t da[kI / 16][4];
      mbar_wait(bars.full(stage(j)), parity(j));
      wgmma_fence();
      issue_scores(s, dp, j);
      wgmma_wait<0>();
      fence_regs(s);
      fence_regs(dp);
      dscores(s, dp, j);
      to_operand<T, kI>(s, da);
      wgmma_fence();
      issue_grad(da, j);
      wgmma_wait<0>();
      fence_regs(dq);
      fence_regs(da);
      release(bars.empty(stage(j)));
    }
  }

  __device__ void store(const Work<D>& w) const {
    T* dq_out = static_cast<T*>(p.dq) + w.b * p.dq_s.batch + w.head * p.dq_s.head;
    store_rows<T, D>(dq_out, p.dq_s.row, dq, p.softmax_scale, row, p.seqlen_q);
  }
};

// Barriers: the tiles loaded once (1 arrival: the TMA thread's), each stage's "full" (the TMA thread,
// plus the stats warp's 32 lanes in dK/dV) and "empty" (the 8 consumer warps).
__device__ __forceinline__ void init_barriers(Bars bars, int full_count) {
  if (threadIdx.x == 0) {
    mbar_init(bars.own_full(), 1);
    for (int s = 0; s < kStages; ++s) {
      mbar_init(bars.full(s), full_count);
      mbar_init(bars.empty(s), kConsumerWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
}

// The 1024-aligned start of dynamic shared memory, as a generic pointer.
__device__ __forceinline__ unsigned char* aligned_smem(unsigned char* raw) {
  return raw + ((1024 - (smem_u32(raw) & 1023)) & 1023);
}

template <typename T, int D>
__device__ __forceinline__ void run_dkdv(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                                         const CUtensorMap* tdo, const FlashParams& p) {
  __shared__ __align__(8) uint64_t barriers[kBarriers];  // static: marks the real image (see the top)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* base = aligned_smem(smem_raw);
  const uint32_t smem = smem_u32(base);
  float* stats = reinterpret_cast<float*>(base + Layout<D>::stats_off);
  const Bars bars{smem_u32(barriers)};
  const Work<D> w = dkdv_work<D>(p);
  init_barriers(bars, 1 + kStatsLanes);

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x == 0) produce_dkdv<D>(tq, tk, tv, tdo, smem, bars, w);
    if (threadIdx.x / 32 == 1) produce_stats<D>(p, stats, bars, w);
  } else {
    setmaxnreg_inc<kConsumerRegs>();
    DkdvConsumer<T, D> c(p, smem, bars, stats, w, wg - 1);
    if (w.steps > 0) {
      mbar_wait(bars.own_full(), 0);
      c.run(w);
    }
    c.store(w);  // zeros where no query sees these keys
  }
}

template <typename T, int D>
__device__ __forceinline__ void run_dq(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                                       const CUtensorMap* tdo, const FlashParams& p) {
  __shared__ __align__(8) uint64_t barriers[kBarriers];
  extern __shared__ unsigned char smem_raw[];
  const uint32_t smem = smem_u32(aligned_smem(smem_raw));
  const Bars bars{smem_u32(barriers)};
  const Work<D> w = dq_work<D>(p);
  init_barriers(bars, 1);

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x == 0) produce_dq<D>(tq, tk, tv, tdo, smem, bars, w, w.head / (p.heads / p.heads_k));
  } else {
    setmaxnreg_inc<kConsumerRegs>();
    DqConsumer<T, D> c(p, smem, bars, w, wg - 1);
    if (w.steps > 0) {
      mbar_wait(bars.own_full(), 0);
      c.run(w);
    }
    c.store(w);  // zeros for queries that see no key
  }
}
#endif  // FA_SM90_DEVICE

// Tensor maps: Q and dO with boxes of kInner rows, K and V of kRows (the dK/dV kernel's), or the other way
// round (the dQ kernel's).
struct Maps {
  CUtensorMap q, k, v, dout;
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_bwd_sm90_dkdv_kernel(const __grid_constant__ Maps maps, const FlashParams p) {
#ifdef FA_SM90_DEVICE
  run_dkdv<T, D>(&maps.q, &maps.k, &maps.v, &maps.dout, p);
#endif
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_bwd_sm90_dq_kernel(const __grid_constant__ Maps maps, const FlashParams p) {
#ifdef FA_SM90_DEVICE
  run_dq<T, D>(&maps.q, &maps.k, &maps.v, &maps.dout, p);
#endif
}

// -- host ------------------------------------------------------------------------------------------

// Q and dO in boxes of q_rows, K and V in boxes of kv_rows; false if TMA cannot describe one of them.
bool encode_maps(Maps* m, const FlashParams& p, int q_rows, int kv_rows) {
  const bool bf16 = p.dtype == AttnDType::kBFloat16;
  const int d = p.head_dim;
  return sm90::encode(&m->q, p.q, bf16, d, p.seqlen_q, p.heads, p.batch, p.q_s, q_rows) &&
         sm90::encode(&m->dout, p.dout, bf16, d, p.seqlen_q, p.heads, p.batch, p.dout_s, q_rows) &&
         sm90::encode(&m->k, p.k, bf16, d, p.seqlen_k, p.heads_k, p.batch, p.k_s, kv_rows) &&
         sm90::encode(&m->v, p.v, bf16, d, p.seqlen_k, p.heads_k, p.batch, p.v_s, kv_rows);
}

// Both kernels or neither: every check and every tensor map comes before the first launch.
template <typename T, int D>
cudaError_t launch(const FlashParams& p, cudaStream_t stream) {
  constexpr int bytes = Layout<D>::bytes;
  if (!sm90::image_ready<flash_bwd_sm90_dkdv_kernel<T, D>>(bytes) ||
      !sm90::image_ready<flash_bwd_sm90_dq_kernel<T, D>>(bytes)) {
    return cudaErrorNotSupported;
  }
  Maps dkdv_maps, dq_maps;
  if (!encode_maps(&dkdv_maps, p, inner<D>(), kRows) || !encode_maps(&dq_maps, p, kRows, inner<D>())) {
    return cudaErrorNotSupported;
  }
  const dim3 dkdv_grid((p.seqlen_k + kRows - 1) / kRows, p.batch * p.heads_k);
  const dim3 dq_grid((p.seqlen_q + kRows - 1) / kRows, p.batch * p.heads);
  flash_bwd_sm90_dkdv_kernel<T, D><<<dkdv_grid, kThreads, bytes, stream>>>(dkdv_maps, p);
  flash_bwd_sm90_dq_kernel<T, D><<<dq_grid, kThreads, bytes, stream>>>(dq_maps, p);
  return cudaGetLastError();
}

}  // namespace

bool flash_bwd_sm90_enabled() {
  const char* env = std::getenv("FA_KERNELS_SM90_BWD");
  return env != nullptr && std::strcmp(env, "1") == 0;
}

cudaError_t flash_bwd_sm90(const FlashParams& p, cudaStream_t stream) {
  if (!flash_bwd_sm90_enabled() || !sm90::shape_supported(p)) return cudaErrorNotSupported;
  const bool bf16 = p.dtype == AttnDType::kBFloat16;
  if (p.head_dim == 64) return bf16 ? launch<__nv_bfloat16, 64>(p, stream) : launch<__half, 64>(p, stream);
  if (p.head_dim == 128) return bf16 ? launch<__nv_bfloat16, 128>(p, stream) : launch<__half, 128>(p, stream);
  return cudaErrorNotSupported;
}

}  // namespace fa_kernels
