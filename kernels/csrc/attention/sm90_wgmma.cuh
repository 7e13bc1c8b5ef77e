// wgmma.mma_async wrappers for the sm_90a attention kernels (flash_fwd_sm90.cu, flash_bwd_sm90.cu). Each
// m64nNk16 product keeps N/2 fp32 accumulators a thread (PTX ISA, "Register Fragments"), so the operand
// lists are long and spelled out here once. SS: A and B from shared memory (descriptors). RS: A from
// registers (four 32-bit registers of packed 16-bit pairs), B from shared memory, B MN-major (tnspB = 1:
// V, head_dim contiguous). scale_d = 0 overwrites the accumulators (the first k-step of a product), 1
// accumulates.
#pragma once

#include <cstdint>

namespace fa_kernels {
namespace sm90 {

template <int N, bool kBf16> struct Wgmma;

// The accumulator operands of an m64nNk16 product: R = N/2 registers a thread, "{%0, ..., %(R-1)}" in
// the instruction and "+f"(d[i]) in the constraints.
#define FA_WGMMA_REGS_32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
#define FA_WGMMA_REGS_64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
#define FA_WGMMA_OUT_32 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define FA_WGMMA_OUT_64 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// One specialisation: N, the 16-bit type ("f16", "bf16"), R = N/2. The operands after the accumulators
// are numbered from R: SS takes desc_a (%R), desc_b (%R+1), scale_d (%R+2); RS takes a[0..3] (%R..%R+3),
// desc_b (%R+4), scale_d (%R+5). The trailing immediates are scale-a and scale-b (1, 1), then for SS
// tnspA and tnspB (0, 0: both K-major), for RS tnspB (1: B is MN-major).
#define FA_WGMMA(N, BF16, TYPE, R, SS_PRED, SS_ARGS, RS_PRED, RS_ARGS)                                        \
  template <> struct Wgmma<N, BF16> {                                                                        \
    static __device__ __forceinline__ void ss(float (&d)[R], uint64_t desc_a, uint64_t desc_b, int scale_d) { \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SS_PRED ", 0;\n"                                      \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " FA_WGMMA_REGS_##R      \
                   SS_ARGS ", p, 1, 1, 0, 0;\n}\n"                                                           \
                   : FA_WGMMA_OUT_##R                                                                        \
                   : "l"(desc_a), "l"(desc_b), "r"(scale_d));                                                \
    }                                                                                                        \
    static __device__ __forceinline__ void rs(float (&d)[R], const uint32_t (&a)[4], uint64_t desc_b,         \
                                              int scale_d) {                                                 \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " RS_PRED ", 0;\n"                                      \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " FA_WGMMA_REGS_##R      \
                   RS_ARGS ", p, 1, 1, 1;\n}\n"                                                              \
                   : FA_WGMMA_OUT_##R                                                                        \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));                \
    }                                                                                                        \
  };

FA_WGMMA(64, false, "f16", 32, "%34", "%32, %33", "%37", "{%32, %33, %34, %35}, %36")
FA_WGMMA(64, true, "bf16", 32, "%34", "%32, %33", "%37", "{%32, %33, %34, %35}, %36")
FA_WGMMA(128, false, "f16", 64, "%66", "%64, %65", "%69", "{%64, %65, %66, %67}, %68")
FA_WGMMA(128, true, "bf16", 64, "%66", "%64, %65", "%69", "{%64, %65, %66, %67}, %68")

#undef FA_WGMMA

}  // namespace sm90
}  // namespace fa_kernels
