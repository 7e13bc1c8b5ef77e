// Flash attention forward for Hopper (sm_90a): TMA loads into 128-byte-swizzled shared memory, wgmma
// tensor-core products issued by whole warpgroups, and warp specialization (FlashAttention-3's schedule,
// our own code).
//
// A CTA owns 128 queries of one (batch, head) and runs three warpgroups:
//   producer  (warpgroup 0, registers cut to 24): one thread loads Q once, then K and V tiles of kBlockN
//             keys into a two-stage ring; each stage has a "full" mbarrier (TMA completes its bytes on it)
//             and an "empty" one (the 8 consumer warps arrive when their products have read it).
//   consumers (warpgroups 1 and 2, registers raised to 240): 64 query rows each. Per key tile:
//             S = Q.K^T (wgmma, both operands in shared memory), online softmax in registers, then
//             O += P.V (wgmma, P from registers, V from shared memory, head_dim-major).
// Three schedules of the consumers' loop (FA_KERNELS_SM90, flash_fwd_sm90.h): serial, overlapped and
// ping-pong, the default (the two warpgroups take turns on the tensor cores through named barriers 1 and
// 2, and each one's softmax, one FFMA and one MUFU.EX2 an element, runs under its own P.V product).
// Tensor maps are 4-D (head_dim, seqlen, heads, batch) over the tensors' real strides, so rows past a
// sequence's end are out of bounds and TMA fills them with zeros: odd lengths cost nothing extra.
//
// Compiled only for sm_90a (wgmma, setmaxnreg); in any other device pass the kernel is empty and has no
// static shared memory, which is how the host side tells that the image it would launch is the real one.
#include "attention/flash_fwd_sm90.h"

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

constexpr int kBlockM = 128;      // queries a CTA: two consumer warpgroups of 64
constexpr int kStages = 2;        // K/V ring depth
constexpr int kThreads = 384;     // producer + 2 consumers

template <int D> __host__ __device__ constexpr int block_n() { return 128; }

template <int D>
struct Layout {  // dynamic shared memory, byte offsets from a 1024-aligned base (the 128B swizzle's period)
  static constexpr int kN = block_n<D>();
  static constexpr int q_bytes = kBlockM * D * 2, kv_bytes = kN * D * 2;
  static constexpr int k_off = q_bytes, v_off = k_off + kStages * kv_bytes;
  static constexpr int bytes = v_off + kStages * kv_bytes + 1024;  // + room to align the base
};

#ifdef FA_SM90_DEVICE
constexpr int kConsumerWarps = 8;  // arrivals an "empty" barrier waits for
constexpr int kBarriers = 1 + 4 * kStages;

using attn::kLn2;
using attn::kLog2e;
using attn::Mma;
using attn::quad_max;
using attn::quad_sum;
using namespace sm90;  // the pipeline's building blocks (sm90_pipeline.cuh)

struct Bars {  // shared-memory addresses of the mbarriers
  uint32_t base;
  __device__ uint32_t q_full() const { return base; }
  __device__ uint32_t k_full(int s) const { return base + 8 * (1 + s); }
  __device__ uint32_t v_full(int s) const { return base + 8 * (1 + kStages + s); }
  __device__ uint32_t k_empty(int s) const { return base + 8 * (1 + 2 * kStages + s); }
  __device__ uint32_t v_empty(int s) const { return base + 8 * (1 + 3 * kStages + s); }
};

struct Tile {  // what a CTA works on
  int m0, b, h, hk, n_blocks;
};

template <int D>
__device__ void produce(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv, uint32_t smem,
                        Bars bars, const Tile& t) {
  using L = Layout<D>;
  mbar_expect_tx(bars.q_full(), L::q_bytes);
  load_tile<D>(smem, tq, bars.q_full(), kBlockM, t.m0, t.h, t.b);
  for (int nb = 0; nb < t.n_blocks; ++nb) {
    const int s = nb % kStages;
    const uint32_t parity = ((nb / kStages) & 1) ^ 1;
    mbar_wait(bars.k_empty(s), parity);
    mbar_expect_tx(bars.k_full(s), L::kv_bytes);
    load_tile<D>(smem + L::k_off + s * L::kv_bytes, tk, bars.k_full(s), L::kN, nb * L::kN, t.hk, t.b);
    mbar_wait(bars.v_empty(s), parity);
    mbar_expect_tx(bars.v_full(s), L::kv_bytes);
    load_tile<D>(smem + L::v_off + s * L::kv_bytes, tv, bars.v_full(s), L::kN, nb * L::kN, t.hk, t.b);
  }
}

// Online softmax of one score tile (in place: scores become probabilities) for the two rows a thread
// holds; alpha gets the factor the running output must be scaled by (the change of the running max).
// Scores are already in log2 units.
template <int N>
__device__ __forceinline__ void softmax_tile(float (&s)[N / 2], float (&row_max)[2], float (&row_sum)[2],
                                             float (&alpha)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = row_max[r];
#pragma unroll
    for (int j = 0; j < N / 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
    mx = quad_max(mx);
    const float base = mx == -INFINITY ? 0.f : mx;  // a row that has seen no key yet stays all zeros
    alpha[r] = exp2f(row_max[r] - base);
    row_max[r] = mx;
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
      s[4 * j + 2 * r] = exp2f(s[4 * j + 2 * r] - base);
      s[4 * j + 2 * r + 1] = exp2f(s[4 * j + 2 * r + 1] - base);
      sum += s[4 * j + 2 * r] + s[4 * j + 2 * r + 1];
    }
    row_sum[r] = row_sum[r] * alpha[r] + sum;
  }
}

template <int D>
__device__ __forceinline__ void rescale(float (&o)[D / 2], const float (&alpha)[2]) {
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    o[4 * j] *= alpha[0];
    o[4 * j + 1] *= alpha[0];
    o[4 * j + 2] *= alpha[1];
    o[4 * j + 3] *= alpha[1];
  }
}

// Scales scores into log2 units and masks keys past seqlen_k and (causal) past the diagonal.
// Accumulator element i of m64nN: n8 block i/4, column 8(i/4) + 2(lane%4) + (i&1), row +8 for i%4 >= 2.
template <int N>
__device__ __forceinline__ void scale_and_mask(float (&s)[N / 2], float scale_log2, bool edge, int n0, int row,
                                               int seqlen_k, bool causal, int offset) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    const int col = n0 + 8 * (i / 4) + 2 * (lane & 3) + (i & 1);
    const int r = row + ((i & 2) ? 8 : 0);
    const bool ok = !edge || (col < seqlen_k && (!causal || col <= r + offset));
    s[i] = ok ? s[i] * scale_log2 : -INFINITY;
  }
}

// 2^x on the special-function unit (MUFU.EX2), whatever the build's math flags.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Sets unscaled scores of hidden keys (past seqlen_k; causal: past the diagonal) to -inf with selects,
// no branches. Only tiles that reach an edge call it.
template <int N>
__device__ __forceinline__ void mask_raw(float (&s)[N / 2], int n0, int row, int seqlen_k, bool causal, int offset) {
  const int col0 = n0 + 2 * (threadIdx.x & 3);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int end = causal ? min(seqlen_k, row + 8 * r + offset + 1) : seqlen_k;  // first hidden key
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const int j = i / 2, e = i & 1;  // n8 block, column in the pair
      if (col0 + 8 * j + e >= end) s[4 * j + 2 * r + e] = -INFINITY;
    }
  }
}

// Online softmax of a tile of UNSCALED scores for the two rows a thread holds, in place (scores become
// probabilities). With c = softmax_scale * log2(e) > 0 the row max of the raw scores is the max of the
// scaled ones, so each probability is one FFMA and one MUFU.EX2: p = 2^(s*c - m*c). row_max stays in raw
// units. alpha: the running output's factor, exactly 1 where the max did not change.
template <int N>
__device__ __forceinline__ void softmax_tile_ffma(float (&s)[N / 2], float (&row_max)[2], float (&row_sum)[2],
                                                  float (&alpha)[2], float c) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx0 = row_max[r], mx1 = s[2 * r + 1];  // two chains: half the dependent latency
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
      mx0 = fmaxf(mx0, s[4 * j + 2 * r]);
      if (j > 0) mx1 = fmaxf(mx1, s[4 * j + 2 * r + 1]);
    }
    const float mx = quad_max(fmaxf(mx0, mx1));
    alpha[r] = mx == row_max[r] ? 1.f : ex2((row_max[r] - mx) * c);  // -inf old max: 0 (O is still 0)
    row_max[r] = mx;
    const float neg_base = mx == -INFINITY ? 0.f : -mx * c;  // a row with no visible key stays all zeros
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
      s[4 * j + 2 * r] = ex2(fmaf(s[4 * j + 2 * r], c, neg_base));
      s[4 * j + 2 * r + 1] = ex2(fmaf(s[4 * j + 2 * r + 1], c, neg_base));
      sum0 += s[4 * j + 2 * r];
      sum1 += s[4 * j + 2 * r + 1];
    }
    row_sum[r] = fmaf(row_sum[r], alpha[r], sum0 + sum1);
  }
}

// O *= alpha, skipped when no row of the warp changed its max (the common case late in a long row). The
// branch is per warp, so it holds no wgmma instruction (those must be reached by the whole warpgroup).
template <int D>
__device__ __forceinline__ void rescale_if_changed(float (&o)[D / 2], const float (&alpha)[2]) {
  if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) rescale<D>(o, alpha);
}

// What one consumer warpgroup (64 query rows) needs through its loop over key tiles.
template <typename T, int D>
struct Consumer {
  using L = Layout<D>;
  static constexpr int kN = L::kN;
  static constexpr bool kBf16 = std::is_same<T, __nv_bfloat16>::value;
  using Scores = float[kN / 2];         // S (then P) of one key tile, fp32 accumulators
  using Operand = uint32_t[kN / 16][4];  // P rounded to T, as the A operand of P.V
  const FlashParams& p;
  uint32_t smem;
  Bars bars;
  int first_row, row, offset;  // this warpgroup's first query, this thread's rows (row, row + 8)
  float scale_log2;
  float o[D / 2];
  float row_max[2], row_sum[2];

  __device__ Consumer(const FlashParams& params, uint32_t smem_base, Bars b, const Tile& t, int cw)
      : p(params), smem(smem_base), bars(b) {
    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    first_row = t.m0 + cw * 64;
    row = first_row + warp * 16 + (lane >> 2);
    offset = p.seqlen_k - p.seqlen_q;  // causal: query i sees keys j <= i + offset
    scale_log2 = p.softmax_scale * kLog2e;
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    row_max[0] = row_max[1] = -INFINITY;
    row_sum[0] = row_sum[1] = 0.f;
  }

  __device__ uint32_t q_tile(int cw) const { return smem + cw * 64 * 128; }  // 64 rows in each column block
  __device__ uint32_t k_tile(int nb) const { return smem + L::k_off + (nb % kStages) * L::kv_bytes; }
  __device__ uint32_t v_tile(int nb) const { return smem + L::v_off + (nb % kStages) * L::kv_bytes; }
  static __device__ uint32_t parity(int nb) { return (nb / kStages) & 1; }

  // S = Q.K^T for key tile nb, issued and committed (one wgmma group); the caller waits.
  __device__ void issue_qk(float (&sc)[kN / 2], uint32_t q, int nb) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      sm90::Wgmma<kN, kBf16>::ss(sc, desc_k_major(q, kBlockM, kk), desc_k_major(k_tile(nb), kN, kk), kk > 0);
    }
    wgmma_commit();
  }
  // O += P.V for key tile nb, issued and committed.
  __device__ void issue_pv(const uint32_t (&pa)[kN / 16][4], int nb) {
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) sm90::Wgmma<D, kBf16>::rs(o, pa[kk], desc_mn_major(v_tile(nb), kN, kk), 1);
    wgmma_commit();
  }
  __device__ void release(uint32_t empty_bar) const {
    if ((threadIdx.x & 31) == 0) mbar_arrive(empty_bar);
  }
  // Masks and exponentiates tile nb's scores in place; alpha: the running output's rescale factor.
  __device__ void softmax(float (&sc)[kN / 2], int nb, float (&alpha)[2]) {
    const int n0 = nb * kN;
    const bool edge = n0 + kN > p.seqlen_k || (p.causal && n0 + kN - 1 > first_row + offset);
    scale_and_mask<kN>(sc, scale_log2, edge, n0, row, p.seqlen_k, p.causal, offset);
    softmax_tile<kN>(sc, row_max, row_sum, alpha);
  }
  // The ping-pong's softmax of tile nb: masks only at an edge, keeps row_max in raw-score units.
  __device__ void softmax_raw(float (&sc)[kN / 2], int nb, float (&alpha)[2]) {
    const int n0 = nb * kN;
    if (n0 + kN > p.seqlen_k || (p.causal && n0 + kN - 1 > first_row + offset)) {
      mask_raw<kN>(sc, n0, row, p.seqlen_k, p.causal, offset);
    }
    softmax_tile_ffma<kN>(sc, row_max, row_sum, alpha, scale_log2);
  }
  // P as the A operand of P.V: k-block kk is n8 blocks 2kk and 2kk+1 of the score accumulator.
  static __device__ void to_operand(const float (&sc)[kN / 2], uint32_t (&pa)[kN / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
#pragma unroll
      for (int e = 0; e < 4; ++e) pa[kk][e] = Mma<T>::pack(sc[8 * kk + 2 * e], sc[8 * kk + 2 * e + 1]);
    }
  }

  // Normalises and writes rows < seqlen_q; lse in natural-log units, +inf for a row that saw no key.
  __device__ void epilogue(const Tile& t) {
    const int lane = threadIdx.x & 31;
    T* out = static_cast<T*>(p.out) + t.b * p.out_s.batch + t.h * p.out_s.head;
    float* lse_row = p.lse + (static_cast<int64_t>(t.b) * p.heads + t.h) * p.seqlen_q;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float total = quad_sum(row_sum[r]);
      const float inv = total > 0.f ? 1.f / total : 0.f;
      const float lse = total > 0.f ? (row_max[r] + log2f(total)) * kLn2 : INFINITY;
      const int q_row = row + 8 * r;
      if (q_row >= p.seqlen_q) continue;
      T* dst = out + static_cast<int64_t>(q_row) * p.out_s.row + 2 * (lane & 3);
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        *reinterpret_cast<uint32_t*>(dst + 8 * j) = Mma<T>::pack(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
      }
      if ((lane & 3) == 0) lse_row[q_row] = lse;
    }
  }
};

// One tile after the other: S_j, softmax, O += P_j.V_j, each product waited for before the next step.
template <typename T, int D>
__device__ void consume_serial(Consumer<T, D>& c, const Tile& t, int cw) {
  constexpr int kN = Consumer<T, D>::kN;
  for (int nb = 0; nb < t.n_blocks; ++nb) {
    float sc[kN / 2], alpha[2];
    uint32_t pa[kN / 16][4];
    mbar_wait(c.bars.k_full(nb % kStages), c.parity(nb));
    wgmma_fence();
    c.issue_qk(sc, c.q_tile(cw), nb);
    wgmma_wait<0>();
    fence_regs(sc);
    c.release(c.bars.k_empty(nb % kStages));
    c.softmax(sc, nb, alpha);
    rescale<D>(c.o, alpha);
    c.to_operand(sc, pa);
    mbar_wait(c.bars.v_full(nb % kStages), c.parity(nb));
    wgmma_fence();
    c.issue_pv(pa, nb);
    wgmma_wait<0>();
    fence_regs(c.o);
    c.release(c.bars.v_empty(nb % kStages));
  }
}

// Intra-warpgroup overlap: S_j = Q.K_j^T and O += P_{j-1}.V_{j-1} are in flight together, and the
// softmax of tile j (all but the rescale of O) runs while the P.V product still computes.
template <typename T, int D>
__device__ void consume_overlapped(Consumer<T, D>& c, const Tile& t, int cw) {
  constexpr int kN = Consumer<T, D>::kN;
  float sc[kN / 2], alpha[2];
  uint32_t pa[kN / 16][4];
  mbar_wait(c.bars.k_full(0), 0);
  wgmma_fence();
  c.issue_qk(sc, c.q_tile(cw), 0);
  wgmma_wait<0>();
  fence_regs(sc);
  c.release(c.bars.k_empty(0));
  c.softmax(sc, 0, alpha);  // O is still zero: no rescale
  c.to_operand(sc, pa);
  for (int nb = 1; nb < t.n_blocks; ++nb) {
    mbar_wait(c.bars.k_full(nb % kStages), c.parity(nb));
    wgmma_fence();
    c.issue_qk(sc, c.q_tile(cw), nb);
    mbar_wait(c.bars.v_full((nb - 1) % kStages), c.parity(nb - 1));
    c.issue_pv(pa, nb - 1);
    wgmma_wait<1>();  // S_j is done, P_{j-1}.V_{j-1} may still run
    fence_regs(sc);
    c.release(c.bars.k_empty(nb % kStages));
    c.softmax(sc, nb, alpha);
    wgmma_wait<0>();
    fence_regs(c.o);
    c.release(c.bars.v_empty((nb - 1) % kStages));
    rescale<D>(c.o, alpha);
    c.to_operand(sc, pa);
  }
  const int last = t.n_blocks - 1;
  mbar_wait(c.bars.v_full(last % kStages), c.parity(last));
  wgmma_fence();
  c.issue_pv(pa, last);
  wgmma_wait<0>();
  fence_regs(c.o);
  c.release(c.bars.v_empty(last % kStages));
}

// Turns on the tensor cores for the ping-pong schedule (FlashAttention-3, section 3.1): consumer
// warpgroup cw waits on its named barrier (kBar0 or kBar1), issues its products, then passes the turn by
// arriving on the other's; both barriers count 256 threads (128 that wait + 128 that arrive). Warpgroup 0
// goes first: warpgroup 1 arrives on kBar0 once before its first turn (the seed).
//
// Invariant (a broken one hangs the GPU): both warpgroups take the same number of turns, n_blocks + 1 or,
// when n_blocks == 0, none at all (no seed either), and n_blocks is the CTA's (Tile), never a warpgroup's
// own (causal rows differ; masking, not the tile count, handles them). Turns then alternate strictly
// (0, 1, 0, 1, ...), and each barrier gets exactly as many arrivals as waits: kBar0: the seed plus
// warpgroup 1's passes after all but its last turn = n_blocks + 1 waits of warpgroup 0; kBar1: warpgroup
// 0's passes after each of its turns = n_blocks + 1 waits of warpgroup 1. Warpgroup 1 does not
// pass after its last turn (nobody would wait for it), so no barrier is left half-arrived at exit.
struct Turns {
  static constexpr int kBar0 = 1, kBar1 = 2, kCount = 256;  // barrier of warpgroup 0, of warpgroup 1
  int cw;
  __device__ void seed() const {
    if (cw == 1) named_bar_arrive<kBar0, kCount>();
  }
  __device__ void take() const {
    if (cw == 0) {
      named_bar_sync<kBar0, kCount>();
    } else {
      named_bar_sync<kBar1, kCount>();
    }
  }
  __device__ void pass(bool last) const {
    if (cw == 0) {
      named_bar_arrive<kBar1, kCount>();
    } else if (!last) {
      named_bar_arrive<kBar0, kCount>();
    }
  }
};

// Between two turns of the ping-pong: waits for the P.V product of tile nb_pv (issued in the last turn;
// none when nb_pv < 0) and frees its V stage, then O *= alpha and P (the newest softmax's) into pa.
// It runs at the top of the loop body on purpose: ptxas moves a wgmma wait up to the start of its basic
// block (the overlapped schedule's SASS shows it above the softmax, which then no longer overlaps the
// product); at the loop's head, the block starts after the previous iteration's softmax.
template <typename T, int D>
__device__ __forceinline__ void drain_pv(Consumer<T, D>& c, typename Consumer<T, D>::Scores& sc,
                                         typename Consumer<T, D>::Operand& pa, const float (&alpha)[2], int nb_pv) {
  wgmma_wait<0>();
  fence_regs(c.o);
  fence_regs(pa);  // the product read P from these registers until here
  fence_regs(sc);  // packing starts after the wait
  if (nb_pv >= 0) c.release(c.bars.v_empty(nb_pv % kStages));
  rescale_if_changed<D>(c.o, alpha);
  c.to_operand(sc, pa);
}

// The ping-pong's first turn: S_0 alone (no P yet), then its softmax (alpha 0 or 1: O is still zero).
template <typename T, int D>
__device__ __forceinline__ void first_turn(Consumer<T, D>& c, const Turns& turns, typename Consumer<T, D>::Scores& sc,
                                           float (&alpha)[2], int cw) {
  turns.take();
  mbar_wait(c.bars.k_full(0), 0);
  wgmma_fence();
  c.issue_qk(sc, c.q_tile(cw), 0);
  turns.pass(false);
  wgmma_wait<0>();
  fence_regs(sc);
  c.release(c.bars.k_empty(0));
  c.softmax_raw(sc, 0, alpha);
}

// Turn nb (0 < nb < n_blocks): S_nb and O += P_{nb-1}.V_{nb-1} issued back to back, the turn passed, then
// the softmax of S_nb while the P.V product (and the other warpgroup's) runs.
template <typename T, int D>
__device__ __forceinline__ void middle_turn(Consumer<T, D>& c, const Turns& turns, typename Consumer<T, D>::Scores& sc,
                                            typename Consumer<T, D>::Operand& pa, float (&alpha)[2], int cw, int nb) {
  turns.take();
  mbar_wait(c.bars.k_full(nb % kStages), c.parity(nb));
  wgmma_fence();
  c.issue_qk(sc, c.q_tile(cw), nb);
  mbar_wait(c.bars.v_full((nb - 1) % kStages), c.parity(nb - 1));
  wgmma_fence();  // ptxas would add it after the wait's branch anyway (C7519)
  c.issue_pv(pa, nb - 1);
  turns.pass(false);
  wgmma_wait<1>();  // S_nb is done, P_{nb-1}.V_{nb-1} may still run
  fence_regs(sc);
  c.release(c.bars.k_empty(nb % kStages));
  c.softmax_raw(sc, nb, alpha);
}

// The last turn: O += P_last.V_last alone, waited for at once (the epilogue follows).
template <typename T, int D>
__device__ __forceinline__ void last_turn(Consumer<T, D>& c, const Turns& turns, typename Consumer<T, D>::Operand& pa,
                                          int last) {
  turns.take();
  mbar_wait(c.bars.v_full(last % kStages), c.parity(last));
  wgmma_fence();
  c.issue_pv(pa, last);
  turns.pass(true);
  wgmma_wait<0>();
  fence_regs(c.o);
  c.release(c.bars.v_empty(last % kStages));
}

// Ping-pong: in its turn a warpgroup issues its products and passes the turn; its softmax of S_j runs
// under its own P_{j-1}.V_{j-1} and the other warpgroup's products, and only then (drain_pv, at the next
// iteration's head) does it wait for P_{j-1}.V_{j-1}. Needs n_blocks > 0.
template <typename T, int D>
__device__ void consume_pingpong(Consumer<T, D>& c, const Tile& t, int cw) {
  const Turns turns{cw};
  typename Consumer<T, D>::Scores sc;
  typename Consumer<T, D>::Operand pa;
  float alpha[2];
  turns.seed();
  first_turn(c, turns, sc, alpha, cw);
  for (int nb = 1; nb < t.n_blocks; ++nb) {
    drain_pv(c, sc, pa, alpha, nb - 2);
    middle_turn(c, turns, sc, pa, alpha, cw, nb);
  }
  drain_pv(c, sc, pa, alpha, t.n_blocks - 2);
  last_turn(c, turns, pa, t.n_blocks - 1);
  for (float& m : c.row_max) m *= c.scale_log2;  // the epilogue takes log2 units
}

template <typename T, int D, Sm90Mode kMode>
__device__ void consume(const FlashParams& p, uint32_t smem, Bars bars, const Tile& t, int cw) {
  Consumer<T, D> c(p, smem, bars, t, cw);
  mbar_wait(bars.q_full(), 0);  // always: the producer loads Q even when there is no key tile
  if (kMode == Sm90Mode::kSerial) {
    consume_serial<T, D>(c, t, cw);
  } else if (kMode == Sm90Mode::kOverlapped && t.n_blocks > 0) {
    consume_overlapped<T, D>(c, t, cw);
  } else if (kMode == Sm90Mode::kPingPong && t.n_blocks > 0) {
    consume_pingpong<T, D>(c, t, cw);
  }
  c.epilogue(t);
}

template <typename T, int D, Sm90Mode kMode>
__device__ __forceinline__ void run_cta(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                                        const FlashParams& p) {
  __shared__ __align__(8) uint64_t barriers[kBarriers];  // static: marks the real image (see the top)
  extern __shared__ unsigned char smem_raw[];
  const uint32_t smem = (smem_u32(smem_raw) + 1023) & ~1023u;
  const Bars bars{smem_u32(barriers)};

  Tile t;
  // the longest causal tiles (the last query blocks) start first
  const int m_block = p.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
  t.m0 = m_block * kBlockM;
  t.b = blockIdx.y / p.heads;
  t.h = blockIdx.y % p.heads;
  t.hk = t.h / (p.heads / p.heads_k);
  const int n_end = p.causal ? min(p.seqlen_k, t.m0 + kBlockM + p.seqlen_k - p.seqlen_q) : p.seqlen_k;
  t.n_blocks = n_end > 0 ? (n_end + block_n<D>() - 1) / block_n<D>() : 0;

  if (threadIdx.x == 0) {
    mbar_init(bars.q_full(), 1);
    for (int s = 0; s < kStages; ++s) {
      mbar_init(bars.k_full(s), 1);
      mbar_init(bars.v_full(s), 1);
      mbar_init(bars.k_empty(s), kConsumerWarps);
      mbar_init(bars.v_empty(s), kConsumerWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    setmaxnreg_dec<24>();
    if (threadIdx.x == 0) produce<D>(tq, tk, tv, smem, bars, t);
  } else {
    setmaxnreg_inc<240>();
    consume<T, D, kMode>(p, smem, bars, t, wg - 1);
  }
}
#endif  // FA_SM90_DEVICE

template <typename T, int D, Sm90Mode kMode>
__global__ void __launch_bounds__(kThreads, 1)
    flash_fwd_sm90_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                          const __grid_constant__ CUtensorMap tv, const FlashParams p) {
#ifdef FA_SM90_DEVICE
  run_cta<T, D, kMode>(&tq, &tk, &tv, p);
#endif
}

// -- host ------------------------------------------------------------------------------------------

template <typename T, int D, Sm90Mode kMode>
cudaError_t launch(const FlashParams& p, cudaStream_t stream) {
  if (!sm90::image_ready<flash_fwd_sm90_kernel<T, D, kMode>>(Layout<D>::bytes)) return cudaErrorNotSupported;
  const bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  CUtensorMap tq, tk, tv;
  if (!sm90::encode(&tq, p.q, bf16, D, p.seqlen_q, p.heads, p.batch, p.q_s, kBlockM) ||
      !sm90::encode(&tk, p.k, bf16, D, p.seqlen_k, p.heads_k, p.batch, p.k_s, block_n<D>()) ||
      !sm90::encode(&tv, p.v, bf16, D, p.seqlen_k, p.heads_k, p.batch, p.v_s, block_n<D>())) {
    return cudaErrorNotSupported;
  }
  const dim3 grid((p.seqlen_q + kBlockM - 1) / kBlockM, p.batch * p.heads);
  flash_fwd_sm90_kernel<T, D, kMode><<<grid, kThreads, Layout<D>::bytes, stream>>>(tq, tk, tv, p);
  return cudaGetLastError();
}

}  // namespace

Sm90Mode flash_fwd_sm90_mode() {
  // unset (or any other value): ping-pong, the fastest on an H200 (benchmarks/results/issue16_h200/pingpong)
  const char* env = std::getenv("FA_KERNELS_SM90");
  if (env == nullptr) return Sm90Mode::kPingPong;
  if (std::strcmp(env, "0") == 0) return Sm90Mode::kOff;
  if (std::strcmp(env, "overlapped") == 0) return Sm90Mode::kOverlapped;
  return std::strcmp(env, "serial") == 0 ? Sm90Mode::kSerial : Sm90Mode::kPingPong;
}

namespace {
template <typename T, int D>
cudaError_t launch_mode(const FlashParams& p, cudaStream_t stream, Sm90Mode mode) {
  // the ping-pong softmax takes the row max of unscaled scores: right only for a positive scale
  if (mode == Sm90Mode::kPingPong && p.softmax_scale > 0.f && std::isfinite(p.softmax_scale)) {
    return launch<T, D, Sm90Mode::kPingPong>(p, stream);
  }
  return mode == Sm90Mode::kSerial ? launch<T, D, Sm90Mode::kSerial>(p, stream)
                                   : launch<T, D, Sm90Mode::kOverlapped>(p, stream);
}
}  // namespace

cudaError_t flash_fwd_sm90(const FlashParams& p, cudaStream_t stream) {
  const Sm90Mode mode = flash_fwd_sm90_mode();
  if (mode == Sm90Mode::kOff || !sm90::shape_supported(p)) return cudaErrorNotSupported;
  const bool bf16 = p.dtype == AttnDType::kBFloat16;
  if (p.head_dim == 64) {
    return bf16 ? launch_mode<__nv_bfloat16, 64>(p, stream, mode) : launch_mode<__half, 64>(p, stream, mode);
  }
  if (p.head_dim == 128) {
    return bf16 ? launch_mode<__nv_bfloat16, 128>(p, stream, mode) : launch_mode<__half, 128>(p, stream, mode);
  }
  return cudaErrorNotSupported;
}

}  // namespace fa_kernels
