// Warp-level building blocks shared by the attention kernels (sm_80+): cp.async tile loads, ldmatrix,
// and mma.sync m16n8k16 with fp32 accumulation.
//
// Every kernel gives each warp 16 rows of its own side (queries, or keys in the dK/dV kernel) and walks
// over tiles of the other side held in shared memory. Fragments use the PTX ISA layouts: an accumulator
// tile (16 x 8) gives lane l rows l/4 and l/4 + 8, columns 2*(l%4) and +1; two neighbouring
// accumulator tiles convert in registers into the A operand (16 x 16) of the next product.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "attention/flash_attn.h"

namespace fa_kernels {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <typename T> struct Mma;
template <> struct Mma<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

__device__ __forceinline__ uint32_t smem_addr(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(ptr)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(ptr)));
}

// 16 bytes global -> shared without passing through registers; `valid` false writes zeros.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ROWS x D elements from `src` (row stride `stride`) into shared `dst` (row stride D + 8, which keeps
// ldmatrix free of bank conflicts); rows at or past `valid_rows` become zeros. All threads take part.
template <typename T, int ROWS, int D, int THREADS>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t stride, int valid_rows) {
  constexpr int kChunks = D / 8;  // 16-byte chunks a row
  for (int i = threadIdx.x; i < ROWS * kChunks; i += THREADS) {
    const int row = i / kChunks, chunk = i % kChunks;
    const bool ok = row < valid_rows;
    cp_async_16(dst + row * (D + 8) + chunk * 8, ok ? src + row * stride + chunk * 8 : src, ok);
  }
}

// acc[MT][N/8] (16*MT x N) += A (16*MT x D, shared, row stride D + 8) . B^T, B = N rows x D in shared.
// A warp with MT row tiles loads each B fragment once for MT products: fewer shared-memory reads a MMA.
template <typename T, int D, int N, int MT>
__device__ __forceinline__ void gemm_abt(float (&acc)[MT][N / 8][4], const T* a, const T* b) {
  constexpr int LD = D + 8;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t af[MT][4];
#pragma unroll
    for (int m = 0; m < MT; ++m) ldmatrix_x4(af[m], a + (m * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t bf[4];
      ldmatrix_x4(bf, b + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        Mma<T>::run(acc[m][2 * np], af[m], bf[0], bf[1]);
        Mma<T>::run(acc[m][2 * np + 1], af[m], bf[2], bf[3]);
      }
    }
  }
}

// acc[MT][D/8] (16*MT x D) += P (16*MT x N, accumulator tiles, rounded to T) . B, B = N rows x D in shared.
template <typename T, int D, int N, int MT>
__device__ __forceinline__ void gemm_pb(float (&acc)[MT][D / 8][4], const float (&p)[MT][N / 8][4], const T* b) {
  constexpr int LD = D + 8;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < N / 16; ++kk) {
    uint32_t af[MT][4];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      af[m][0] = Mma<T>::pack(p[m][2 * kk][0], p[m][2 * kk][1]);
      af[m][1] = Mma<T>::pack(p[m][2 * kk][2], p[m][2 * kk][3]);
      af[m][2] = Mma<T>::pack(p[m][2 * kk + 1][0], p[m][2 * kk + 1][1]);
      af[m][3] = Mma<T>::pack(p[m][2 * kk + 1][2], p[m][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t bf[4];
      ldmatrix_x4_trans(bf, b + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        Mma<T>::run(acc[m][2 * dp], af[m], bf[0], bf[1]);
        Mma<T>::run(acc[m][2 * dp + 1], af[m], bf[2], bf[3]);
      }
    }
  }
}

template <int MT, int N>
__device__ __forceinline__ void zero(float (&acc)[MT][N][4]) {
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int t = 0; t < N; ++t) acc[m][t][0] = acc[m][t][1] = acc[m][t][2] = acc[m][t][3] = 0.f;
  }
}

// The four lanes that share an accumulator row.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Writes a 16 x D accumulator (scaled) as T rows of `dst` (row stride `stride`), rows < valid_rows.
template <typename T, int D>
__device__ __forceinline__ void store_rows(T* dst, int64_t stride, const float (&acc)[D / 8][4], float scale_lo,
                                           float scale_hi, int valid_rows) {
  const int lane = threadIdx.x & 31;
  const int r = lane >> 2, c = (lane & 3) * 2;
#pragma unroll
  for (int t = 0; t < D / 8; ++t) {
    if (r < valid_rows) {
      *reinterpret_cast<uint32_t*>(dst + r * stride + t * 8 + c) =
          Mma<T>::pack(acc[t][0] * scale_lo, acc[t][1] * scale_lo);
    }
    if (r + 8 < valid_rows) {
      *reinterpret_cast<uint32_t*>(dst + (r + 8) * stride + t * 8 + c) =
          Mma<T>::pack(acc[t][2] * scale_hi, acc[t][3] * scale_hi);
    }
  }
}

// Column of element e (0..3) of accumulator tile t, relative to the tile row's start; row is +8 for e >= 2.
__device__ __forceinline__ int acc_col(int t, int e) { return t * 8 + (threadIdx.x & 3) * 2 + (e & 1); }
__device__ __forceinline__ int acc_row(int e) { return ((threadIdx.x & 31) >> 2) + (e >= 2 ? 8 : 0); }

// The head dims with compiled kernels; dispatch() below instantiates exactly these.
constexpr bool head_dim_compiled(int head_dim) { return head_dim == 64 || head_dim == 128; }

// Checks the call's shape, then runs Launch<T, D>::run for its dtype and head dim.
template <template <typename, int> class Launch>
cudaError_t dispatch(const FlashParams& p, cudaStream_t stream) {
  if (p.batch <= 0 || p.heads <= 0 || p.heads_k <= 0 || p.heads % p.heads_k != 0 || p.seqlen_q <= 0 ||
      p.seqlen_k <= 0 || !head_dim_compiled(p.head_dim)) {
    return cudaErrorInvalidValue;
  }
  const bool bf16 = p.dtype == AttnDType::kBFloat16;
  if (p.head_dim == 64) return bf16 ? Launch<__nv_bfloat16, 64>::run(p, stream) : Launch<__half, 64>::run(p, stream);
  return bf16 ? Launch<__nv_bfloat16, 128>::run(p, stream) : Launch<__half, 128>::run(p, stream);
}

}  // namespace attn
}  // namespace fa_kernels
