// Hopper (sm_90a) building blocks shared by the attention forward (flash_fwd_sm90.cu) and backward
// (flash_bwd_sm90.cu): mbarriers, named barriers, TMA tile loads into 128-byte-swizzled shared memory,
// wgmma shared-memory descriptors for that layout, the wgmma fences, and setmaxnreg. Included only in the
// sm_90a device pass (FA_SM90_DEVICE), like sm90_wgmma.cuh.
//
// Tile layout: a tile of `rows` x D 16-bit elements lands as D/64 column blocks of rows x 128 bytes (one
// TMA box of 64 columns each), 128B-swizzled, so every tile base must be 1024-byte aligned.
#pragma once

#include <cstdint>

#include "attention/sm90_host.h"  // kBoxCols

namespace fa_kernels {
namespace sm90 {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// -- mbarriers -------------------------------------------------------------------------------------
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Spins until the phase of parity `parity` has completed. A fresh barrier counts its (nonexistent)
// previous phase, parity 1, as complete: the producer's first wait on an empty slot passes at once.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// -- named barriers: id 0 is __syncthreads'; ids as immediates, so ptxas reserves only those used -----
template <int kId, int kCount>
__device__ __forceinline__ void named_bar_sync() {
  asm volatile("bar.sync %0, %1;\n" ::"n"(kId), "n"(kCount) : "memory");
}
template <int kId, int kCount>
__device__ __forceinline__ void named_bar_arrive() {
  asm volatile("bar.arrive %0, %1;\n" ::"n"(kId), "n"(kCount) : "memory");
}

// -- TMA -------------------------------------------------------------------------------------------
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap* map, uint32_t bar, int col, int row,
                                         int head, int batch) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(row), "r"(head), "r"(batch), "r"(bar)
      : "memory");
}

// A tile of `rows` x D lands as D/64 column blocks of rows x 128 bytes, one TMA box each.
template <int D>
__device__ __forceinline__ void load_tile(uint32_t dst, const CUtensorMap* map, uint32_t bar, int rows, int row0,
                                          int head, int batch) {
#pragma unroll
  for (int c = 0; c < D / kBoxCols; ++c) tma_load(dst + c * rows * 128, map, bar, c * kBoxCols, row0, head, batch);
}

// -- wgmma -----------------------------------------------------------------------------------------
// Shared-memory matrix descriptor: start address, leading and stride byte offsets (all >> 4), 128B swizzle.
__device__ __forceinline__ uint64_t make_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | static_cast<uint64_t>((lbo & 0x3FFFF) >> 4) << 16 |
         static_cast<uint64_t>((sbo & 0x3FFFF) >> 4) << 32 | 1ull << 62;
}
// K-major operand (Q, K: head_dim contiguous) at k-step kk of 16 elements: 4 steps inside a 128-byte
// swizzle atom (32 bytes each), then the next column block. 8-row groups are 1024 bytes apart.
__device__ __forceinline__ uint64_t desc_k_major(uint32_t tile, int rows, int kk) {
  return make_desc(tile + (kk / 4) * rows * 128 + (kk % 4) * 32, 16, 1024);
}
// MN-major operand (V as the B of P.V: head_dim, the N side, contiguous) at k-step kk of 16 keys:
// 16 rows further; column blocks of 64 head_dim elements are rows * 128 bytes apart (LBO).
__device__ __forceinline__ uint64_t desc_mn_major(uint32_t tile, int rows, int kk) {
  return make_desc(tile + kk * 16 * 128, rows * 128, 1024);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from touching accumulators across an asynchronous product: every read after
// the wait depends on these (empty) definitions.
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

template <int M, int N>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[M][N]) {
#pragma unroll
  for (int i = 0; i < M; ++i) {
#pragma unroll
    for (int j = 0; j < N; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
  }
}

template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace sm90
}  // namespace fa_kernels
