// The Hopper (sm_90a) attention forward: TMA + wgmma + warp specialization (flash_fwd_sm90.cu).
// flash_fwd() tries it first and falls back to the sm_80 kernel wherever it does not apply.
#pragma once

#include "attention/flash_attn.h"

namespace fa_kernels {

// FA_KERNELS_SM90, read on every call so one process can compare the paths: unset, "pingpong" or any
// value not named here the two consumer warpgroups taking turns on the tensor cores (issue #16; the
// overlapped schedule where the softmax scale is not positive), "overlapped" both at once, "serial" the
// one-step-at-a-time schedule (for debugging), "0" off (the sm_80 kernel).
enum class Sm90Mode { kOff, kSerial, kOverlapped, kPingPong };
Sm90Mode flash_fwd_sm90_mode();

// Same contract as flash_fwd. cudaErrorNotSupported, with nothing launched and no error left pending,
// when it does not apply: not a compute capability 9.0 device, no sm_90a image in this build, switched
// off, a head dim other than 64 or 128, or tensors TMA cannot describe.
cudaError_t flash_fwd_sm90(const FlashParams& p, cudaStream_t stream);

}  // namespace fa_kernels
