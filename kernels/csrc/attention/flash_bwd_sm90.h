// The Hopper (sm_90a) attention backward: TMA + wgmma + warp specialization (flash_bwd_sm90.cu).
// flash_bwd() tries it first when it is switched on and falls back to the sm_80 kernels wherever it does
// not apply.
#pragma once

#include "attention/flash_attn.h"

namespace fa_kernels {

// FA_KERNELS_SM90_BWD, read on every call so one process can compare the paths: "1" the sm90 backward,
// unset or anything else the sm_80 backward (the default until the sm90 one is measured on a GPU).
bool flash_bwd_sm90_enabled();

// Same contract as flash_bwd. cudaErrorNotSupported, with nothing launched and no error left pending,
// when it does not apply: switched off, not a compute capability 9.0 device, no sm_90a image in this
// build, a head dim other than 64 or 128, or tensors TMA cannot describe.
cudaError_t flash_bwd_sm90(const FlashParams& p, cudaStream_t stream);

}  // namespace fa_kernels
