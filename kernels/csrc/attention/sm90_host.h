// Host side of the Hopper (sm_90a) attention kernels (flash_fwd_sm90.cu, flash_bwd_sm90.cu): TMA tensor
// maps over the tensors' real strides, and the check that the sm_90a image of a kernel is what a launch
// on the current device would run. No torch, no -lcuda (the driver's encoder is found at run time).
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include "attention/flash_attn.h"

namespace fa_kernels {
namespace sm90 {

constexpr int kBoxCols = 64;  // 128 bytes of 16-bit elements: one swizzle atom wide

using EncodeTiled = PFN_cuTensorMapEncodeTiled_v12000;

// The shapes both sm90 directions take: at least one of everything, whole GQA groups, and batch x heads
// within a grid dimension's 65535.
inline bool shape_supported(const FlashParams& p) {
  return p.batch > 0 && p.heads > 0 && p.heads_k > 0 && p.heads % p.heads_k == 0 && p.seqlen_q > 0 &&
         p.seqlen_k > 0 && p.batch * static_cast<int64_t>(p.heads) <= 65535;
}

// The driver's tensor-map encoder, found at run time (no -lcuda); null when the driver has none.
inline EncodeTiled encoder() {
  static const EncodeTiled fn = [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    const cudaError_t err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t err = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &ptr, cudaEnableDefault, &found);
#endif
    if (err != cudaSuccess) cudaGetLastError();  // a failed probe must not show up as the next launch's error
    return err == cudaSuccess && found == cudaDriverEntryPointSuccess ? reinterpret_cast<EncodeTiled>(ptr) : nullptr;
  }();
  return fn;
}

// A 4-D map (head_dim, seqlen, heads, batch) with boxes of 64 x rows; false if the driver refuses it
// (e.g. a stride that is not a multiple of 16 bytes). Rows past seqlen are out of bounds: TMA fills zeros.
inline bool encode(CUtensorMap* map, const void* base, bool bf16, int head_dim, int seqlen, int heads, int batch,
                   const Strides& st, int rows) {
  const EncodeTiled fn = encoder();
  if (fn == nullptr) return false;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(seqlen),
                              static_cast<cuuint64_t>(heads), static_cast<cuuint64_t>(batch)};
  if (st.row < 0 || st.head < 0 || st.batch < 0) return false;
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(st.row) * 2, static_cast<cuuint64_t>(st.head) * 2,
                                 static_cast<cuuint64_t>(st.batch) * 2};
  const cuuint32_t box[4] = {kBoxCols, static_cast<cuuint32_t>(rows), 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUresult res = fn(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                          const_cast<void*>(base), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                          CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return res == CUDA_SUCCESS;
}

// kKernel can run on the current device with smem_bytes of dynamic shared memory: compute capability 9.0,
// and the sm_90a image (the only one with static shared memory: its mbarriers) is what a launch would
// pick. Cached per kernel and device.
template <auto kKernel>
bool image_ready(int smem_bytes) {
  constexpr int kMaxDevices = 64;
  static int state[kMaxDevices] = {};  // 0 unknown, 1 yes, -1 no
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) {
    cudaGetLastError();
    return false;
  }
  if (state[device] == 0) {
    int major = 0, minor = 0;
    cudaFuncAttributes attr{};
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
                    major == 9 && minor == 0 && cudaFuncGetAttributes(&attr, kKernel) == cudaSuccess &&
                    attr.sharedSizeBytes > 0 &&
                    cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes) ==
                        cudaSuccess;
    if (!ok) cudaGetLastError();
    state[device] = ok ? 1 : -1;
  }
  return state[device] == 1;
}

}  // namespace sm90
}  // namespace fa_kernels
