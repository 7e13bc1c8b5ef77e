// Fused dropout + residual add + RMSNorm. One block per row in the forward; a persistent grid in the
// backward whose blocks keep dW partial sums in registers (no atomics, deterministic).
// Loads and stores are 16 bytes wide when rows are 16-byte aligned, element-wise otherwise.
// Dropout: one Philox4x32-10 call per 8 elements, each 32-bit word split into two 16-bit draws, keyed
// by the seed and counted as the Triton backend counts; keep when draw >= ceil(p * 65536).
#include "rms_norm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace fa_kernels {
namespace {

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// VEC elements of T moved as aligned 16-byte packs when VEC * sizeof(T) >= 16 (a float residual next to
// bf16 data moves 8 floats as two packs), element by element when VEC == 1.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, int VEC>
__device__ __forceinline__ void load(const T* ptr, float (&out)[VEC]) {
  constexpr int kPer = VEC * sizeof(T) >= 16 ? 16 / sizeof(T) : VEC;
#pragma unroll
  for (int k = 0; k < VEC / kPer; ++k) {
    Pack<T, kPer> pack = *reinterpret_cast<const Pack<T, kPer>*>(ptr + k * kPer);
#pragma unroll
    for (int j = 0; j < kPer; ++j) out[k * kPer + j] = to_float(pack.v[j]);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store(T* ptr, const float (&in)[VEC]) {
  constexpr int kPer = VEC * sizeof(T) >= 16 ? 16 / sizeof(T) : VEC;
#pragma unroll
  for (int k = 0; k < VEC / kPer; ++k) {
    Pack<T, kPer> pack;
#pragma unroll
    for (int j = 0; j < kPer; ++j) pack.v[j] = from_float<T>(in[k * kPer + j]);
    *reinterpret_cast<Pack<T, kPer>*>(ptr + k * kPer) = pack;
  }
}

// Weight, y and dy have a dtype chosen at run time (mixed precision): one uniform branch per load or
// store instead of three more template parameters (the kernels are memory bound; 3x the instantiations
// would triple the compile time for nothing).
template <int VEC>
__device__ __forceinline__ void load_any(const void* base, DType dtype, int64_t offset, float (&out)[VEC]) {
  switch (dtype) {
    case DType::kFloat32: load<float, VEC>(static_cast<const float*>(base) + offset, out); break;
    case DType::kFloat16: load<__half, VEC>(static_cast<const __half*>(base) + offset, out); break;
    case DType::kBFloat16:
      load<__nv_bfloat16, VEC>(static_cast<const __nv_bfloat16*>(base) + offset, out);
      break;
  }
}

template <int VEC>
__device__ __forceinline__ void store_any(void* base, DType dtype, int64_t offset, const float (&in)[VEC]) {
  switch (dtype) {
    case DType::kFloat32: store<float, VEC>(static_cast<float*>(base) + offset, in); break;
    case DType::kFloat16: store<__half, VEC>(static_cast<__half*>(base) + offset, in); break;
    case DType::kBFloat16: store<__nv_bfloat16, VEC>(static_cast<__nv_bfloat16*>(base) + offset, in); break;
  }
}

// Philox4x32-10 (Salmon et al., SC'11): 10 rounds of two 32x32->64 multiplies, Weyl-sequence keys.
__device__ __forceinline__ uint4 philox4x32_10(uint4 ctr, uint2 key) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = __umulhi(kMul0, ctr.x), lo0 = kMul0 * ctr.x;
    const uint32_t hi1 = __umulhi(kMul1, ctr.z), lo1 = kMul1 * ctr.z;
    ctr = make_uint4(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
    key.x += kWeyl0;
    key.y += kWeyl1;
  }
  return ctr;
}

// Keep bits for the VEC elements starting at column `col` (VEC divides 8, col % VEC == 0).
// The counter layout is the Triton backend's (tl.randint4x(seed, row * ceil(cols / 8) + col / 8)), so
// both backends draw the same mask for the same seed.
template <int VEC>
__device__ __forceinline__ void keep_mask(uint64_t seed, int64_t row, int64_t col, int64_t cols,
                                          uint32_t threshold, bool (&keep)[VEC]) {
  uint4 counter = make_uint4(static_cast<uint32_t>(row * ((cols + 7) >> 3) + (col >> 3)), 0u, 0u, 0u);
  uint2 key = make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  uint4 r = philox4x32_10(counter, key);
  // the Triton backend flattens tl.join(tl.join(r0, r1), tl.join(r2, r3)), i.e. words r0, r2, r1, r3
  const uint32_t words[4] = {r.x, r.z, r.y, r.w};
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    int e = static_cast<int>((col + j) & 7);
    uint32_t draw = (e & 1) ? (words[e >> 1] >> 16) : (words[e >> 1] & 0xFFFFu);
    keep[j] = draw >= threshold;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds 33 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read from the previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < static_cast<int>((blockDim.x + 31) >> 5) ? scratch[lane] : 0.f;
    w = warp_sum(w);
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  return scratch[32];
}

uint32_t dropout_threshold(float p) {
  return static_cast<uint32_t>(std::min(65536.0, std::ceil(static_cast<double>(p) * 65536.0)));
}

template <typename T, typename R, int VEC, int ITEMS>
__global__ void __launch_bounds__(1024) rms_norm_fwd_kernel(RmsNormFwdParams p, uint32_t threshold,
                                                            float scale) {
  __shared__ float scratch[33];
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.x_stride;
  const R* res = p.residual ? static_cast<const R*>(p.residual) + row * p.residual_stride : nullptr;
  float s[ITEMS][VEC];
  float sq = 0.f;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int64_t col = (static_cast<int64_t>(it) * blockDim.x + threadIdx.x) * VEC;
    if (col >= p.cols) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) s[it][j] = 0.f;
      continue;
    }
    load<T, VEC>(x + col, s[it]);
    if (p.dropout_p > 0.f) {
      bool keep[VEC];
      keep_mask<VEC>(p.seed, row, col, p.cols, threshold, keep);
#pragma unroll
      for (int j = 0; j < VEC; ++j) s[it][j] = keep[j] ? s[it][j] * scale : 0.f;
      if (p.keep_out) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) p.keep_out[row * p.cols + col + j] = keep[j];
      }
    }
    if (res) {
      float r[VEC];
      load<R, VEC>(res + col, r);
#pragma unroll
      for (int j = 0; j < VEC; ++j) s[it][j] += r[j];
    }
    if (p.residual_out) {
      store<R, VEC>(static_cast<R*>(p.residual_out) + row * p.residual_out_stride + col, s[it]);
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) sq += s[it][j] * s[it][j];
  }
  const float rstd = rsqrtf(block_sum(sq, scratch) / static_cast<float>(p.cols) + p.eps);
  if (threadIdx.x == 0) p.rstd[row] = rstd;
  const bool has_w = p.weight != nullptr;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int64_t col = (static_cast<int64_t>(it) * blockDim.x + threadIdx.x) * VEC;
    if (col >= p.cols) continue;
    float out[VEC], wv[VEC];
    if (has_w) load_any<VEC>(p.weight, p.weight_dtype, col, wv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = s[it][j] * rstd * (has_w ? wv[j] : 1.f);
    store_any<VEC>(p.y, p.out_dtype, row * p.y_stride + col, out);
  }
}

template <typename T, typename R, int VEC, int ITEMS>
__global__ void __launch_bounds__(1024) rms_norm_bwd_kernel(RmsNormBwdParams p, uint32_t threshold,
                                                            float scale) {
  __shared__ float scratch[33];
  float wv[ITEMS][VEC], dw[ITEMS][VEC];
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int64_t col = (static_cast<int64_t>(it) * blockDim.x + threadIdx.x) * VEC;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      wv[it][j] = 1.f;
      dw[it][j] = 0.f;
    }
    if (p.weight && col < p.cols) load_any<VEC>(p.weight, p.weight_dtype, col, wv[it]);
  }
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const R* s_row = static_cast<const R*>(p.s) + row * p.s_stride;
    const float rstd = p.rstd[row];
    float xhat[ITEMS][VEC], wdy[ITEMS][VEC];
    float dot = 0.f;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t col = (static_cast<int64_t>(it) * blockDim.x + threadIdx.x) * VEC;
      if (col >= p.cols) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) xhat[it][j] = wdy[it][j] = 0.f;
        continue;
      }
      float dy[VEC];
      load<R, VEC>(s_row + col, xhat[it]);
      load_any<VEC>(p.dy, p.dy_dtype, row * p.dy_stride + col, dy);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        xhat[it][j] *= rstd;
        wdy[it][j] = dy[j] * wv[it][j];
        dw[it][j] += dy[j] * xhat[it][j];
        dot += xhat[it][j] * wdy[it][j];
      }
    }
    const float c1 = block_sum(dot, scratch) / static_cast<float>(p.cols);
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t col = (static_cast<int64_t>(it) * blockDim.x + threadIdx.x) * VEC;
      if (col >= p.cols) continue;
      float ds[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) ds[j] = (wdy[it][j] - xhat[it][j] * c1) * rstd;
      if (p.dresidual_out) {
        float g[VEC];
        load<R, VEC>(static_cast<const R*>(p.dresidual_out) + row * p.dresidual_out_stride + col, g);
#pragma unroll
        for (int j = 0; j < VEC; ++j) ds[j] += g[j];
      }
      if (p.dresidual) store<R, VEC>(static_cast<R*>(p.dresidual) + row * p.dresidual_stride + col, ds);
      if (p.dropout_p > 0.f) {
        bool keep[VEC];
        keep_mask<VEC>(p.seed, row, col, p.cols, threshold, keep);
#pragma unroll
        for (int j = 0; j < VEC; ++j) ds[j] = keep[j] ? ds[j] * scale : 0.f;
      }
      store<T, VEC>(static_cast<T*>(p.dx) + row * p.dx_stride + col, ds);
    }
  }
  if (p.dweight_partial) {
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t col = (static_cast<int64_t>(it) * blockDim.x + threadIdx.x) * VEC;
      if (col >= p.cols) continue;
#pragma unroll
      for (int j = 0; j < VEC; ++j) p.dweight_partial[blockIdx.x * p.cols + col + j] = dw[it][j];
    }
  }
}

// dweight[c] = sum over the partial rows. 32 columns a block, one a lane (each warp reads 128-byte rows),
// the partial rows split over the block's warps and the warps' sums added in shared memory in a fixed
// order: deterministic. (One thread a column, walking all partial rows, left the reduction with a few
// dozen blocks and one load in flight a thread: tens of microseconds next to a ~0.2 ms backward.)
constexpr int kDweightWarps = 8;

template <typename T>
__global__ void __launch_bounds__(32 * kDweightWarps) dweight_kernel(const float* partial, int partial_rows,
                                                                      int64_t cols, T* out) {
  __shared__ float sums[kDweightWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  float acc = 0.f;
  if (col < cols) {
    for (int r = warp; r < partial_rows; r += kDweightWarps) acc += partial[static_cast<int64_t>(r) * cols + col];
  }
  sums[warp][lane] = acc;
  __syncthreads();
  if (warp == 0 && col < cols) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kDweightWarps; ++w) total += sums[w][lane];
    out[col] = from_float<T>(total);
  }
}

// Launch shape for a row of `cols`: VEC elements a thread per item, ITEMS items, `threads` threads.
struct Shape {
  int vec, items, threads;
};

Shape shape_for(int64_t cols, int elem_size, bool aligned) {
  const int vec = aligned ? 16 / elem_size : 1;
  const int64_t chunks = (cols + vec - 1) / vec;
  for (int items : {1, 2, 4, 8}) {
    const int64_t threads = (chunks + items - 1) / items;
    if (threads <= 1024) return {vec, items, static_cast<int>(std::max<int64_t>(32, (threads + 31) / 32 * 32))};
  }
  return {vec, 0, 0};
}

bool aligned16(const void* ptr, int64_t stride, int elem_size) {
  return ptr == nullptr ||
         (reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && (stride * elem_size) % 16 == 0);
}

int elem_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

// the residual stream is x's dtype or float32 (the R template parameter's two choices)
bool residual_dtype_ok(DType dtype, DType residual_dtype) {
  return residual_dtype == dtype || residual_dtype == DType::kFloat32;
}

// Dispatch T (dtype) x R (residual dtype: same as T or float) x VEC x ITEMS.
template <template <typename, typename, int, int> class Launch, typename Params>
cudaError_t dispatch(const Params& p, DType dtype, DType rdtype, Shape shape, cudaStream_t stream) {
  auto by_items = [&](auto t, auto r, auto vec_tag) -> cudaError_t {
    using T = decltype(t);
    using R = decltype(r);
    constexpr int VEC = decltype(vec_tag)::value;
    switch (shape.items) {
      case 1: return Launch<T, R, VEC, 1>::run(p, shape, stream);
      case 2: return Launch<T, R, VEC, 2>::run(p, shape, stream);
      case 4: return Launch<T, R, VEC, 4>::run(p, shape, stream);
      case 8: return Launch<T, R, VEC, 8>::run(p, shape, stream);
      default: return cudaErrorInvalidValue;
    }
  };
  auto by_vec = [&](auto t, auto r) -> cudaError_t {
    using T = decltype(t);
    constexpr int kWide = 16 / sizeof(T);
    if (shape.vec == 1) return by_items(t, r, std::integral_constant<int, 1>{});
    if (shape.vec == kWide) return by_items(t, r, std::integral_constant<int, kWide>{});
    return cudaErrorInvalidValue;
  };
  auto by_residual = [&](auto t) -> cudaError_t {
    using T = decltype(t);
    if (rdtype == dtype) return by_vec(t, T{});
    if (rdtype == DType::kFloat32) return by_vec(t, float{});
    return cudaErrorInvalidValue;
  };
  switch (dtype) {
    case DType::kFloat32: return by_residual(float{});
    case DType::kFloat16: return by_residual(__half{});
    case DType::kBFloat16: return by_residual(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

template <typename T, typename R, int VEC, int ITEMS>
struct FwdLaunch {
  static cudaError_t run(const RmsNormFwdParams& p, Shape shape, cudaStream_t stream) {
    const float scale = p.dropout_p > 0.f ? 1.f / (1.f - p.dropout_p) : 1.f;
    rms_norm_fwd_kernel<T, R, VEC, ITEMS>
        <<<static_cast<unsigned>(p.rows), shape.threads, 0, stream>>>(p, dropout_threshold(p.dropout_p), scale);
    return cudaGetLastError();
  }
};

template <typename T, typename R, int VEC, int ITEMS>
struct BwdLaunch {
  static cudaError_t run(const RmsNormBwdParams& p, Shape shape, cudaStream_t stream) {
    const float scale = p.dropout_p > 0.f ? 1.f / (1.f - p.dropout_p) : 1.f;
    rms_norm_bwd_kernel<T, R, VEC, ITEMS>
        <<<p.partial_rows, shape.threads, 0, stream>>>(p, dropout_threshold(p.dropout_p), scale);
    return cudaGetLastError();
  }
};

}  // namespace

int rms_norm_bwd_blocks(int64_t rows, int sm_count) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(rows, static_cast<int64_t>(sm_count) * 4)));
}

cudaError_t rms_norm_fwd(const RmsNormFwdParams& p, cudaStream_t stream) {
  if (p.cols <= 0 || p.cols > kMaxCols || p.rows <= 0) return cudaErrorInvalidValue;
  if (!residual_dtype_ok(p.dtype, p.residual_dtype)) return cudaErrorInvalidValue;
  const int es = elem_size(p.dtype), rs = elem_size(p.residual_dtype);
  const int ws = elem_size(p.weight_dtype), os = elem_size(p.out_dtype);
  // the vector width follows T; a float residual, weight or y next to 16-bit data moves as two
  // 16-byte packs, a 16-bit y next to float data as one 8-byte pack
  const bool aligned = p.cols % (16 / es) == 0 && aligned16(p.x, p.x_stride, es) &&
                       aligned16(p.residual, p.residual_stride, rs) && aligned16(p.y, p.y_stride, os) &&
                       aligned16(p.residual_out, p.residual_out_stride, rs) && aligned16(p.weight, 0, ws);
  const Shape shape = shape_for(p.cols, es, aligned);
  if (shape.items == 0) return cudaErrorInvalidValue;
  return dispatch<FwdLaunch>(p, p.dtype, p.residual_dtype, shape, stream);
}

cudaError_t rms_norm_bwd(const RmsNormBwdParams& p, cudaStream_t stream) {
  if (p.cols <= 0 || p.cols > kMaxCols || p.rows <= 0 || p.partial_rows <= 0) return cudaErrorInvalidValue;
  if (!residual_dtype_ok(p.dtype, p.residual_dtype)) return cudaErrorInvalidValue;
  const int es = elem_size(p.dtype), rs = elem_size(p.residual_dtype);
  const int ws = elem_size(p.weight_dtype), ds = elem_size(p.dy_dtype);
  const bool aligned = p.cols % (16 / es) == 0 && aligned16(p.s, p.s_stride, rs) &&
                       aligned16(p.dy, p.dy_stride, ds) && aligned16(p.dx, p.dx_stride, es) &&
                       aligned16(p.dresidual_out, p.dresidual_out_stride, rs) &&
                       aligned16(p.dresidual, p.dresidual_stride, rs) && aligned16(p.weight, 0, ws);
  const Shape shape = shape_for(p.cols, es, aligned);
  if (shape.items == 0) return cudaErrorInvalidValue;
  return dispatch<BwdLaunch>(p, p.dtype, p.residual_dtype, shape, stream);
}

cudaError_t rms_norm_dweight(const float* partial, int partial_rows, int64_t cols, void* dweight,
                             DType dtype, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((cols + 31) / 32);
  constexpr unsigned kThreads = 32 * kDweightWarps;
  switch (dtype) {
    case DType::kFloat32:
      dweight_kernel<float><<<blocks, kThreads, 0, stream>>>(partial, partial_rows, cols, static_cast<float*>(dweight));
      break;
    case DType::kFloat16:
      dweight_kernel<__half><<<blocks, kThreads, 0, stream>>>(partial, partial_rows, cols, static_cast<__half*>(dweight));
      break;
    case DType::kBFloat16:
      dweight_kernel<__nv_bfloat16><<<blocks, kThreads, 0, stream>>>(partial, partial_rows, cols,
                                                               static_cast<__nv_bfloat16*>(dweight));
      break;
  }
  return cudaGetLastError();
}

}  // namespace fa_kernels
