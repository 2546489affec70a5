// Scalar device helpers shared by the CUDA kernels: exp2, a NaN-propagating max, a row sum's
// reciprocal, packing two floats into one register of 16-bit pairs (the MMA operand format), and
// a pointer's address in the shared-memory window (what PTX shared-memory instructions take).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace liteattn::cuda {

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// max that returns NaN when either input is NaN (PTX max.NaN, one FMNMX like fmaxf). fmaxf drops
// NaN; with this a NaN score makes the tile's and then the row's running max NaN, as in the CPU
// reference, so the row votes keep for the rest of the call (method.md section 3).
__device__ __forceinline__ float max_nan(float a, float b) {
  float y;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(y) : "f"(a), "f"(b));
  return y;
}

// 1 / x for a row's sum of weights (>= 1 when any weight is 1, 0 when every tile was skipped):
// one MUFU.RCP (about 1 ulp), without the branches of an IEEE division; O is then rounded to 16
// bits anyway.
__device__ __forceinline__ float reciprocal_or_zero(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return x == 0.f ? 0.f : r;
}

// Two floats rounded to nearest and packed low-first: the register format of MMA operands.
__device__ __forceinline__ std::uint32_t pack_bf16x2(float a, float b) {
  __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return reinterpret_cast<std::uint32_t&>(v);
}

__device__ __forceinline__ std::uint32_t pack_f16x2(float a, float b) {
  __half2 v = __floats2half2_rn(a, b);
  return reinterpret_cast<std::uint32_t&>(v);
}

__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

}  // namespace liteattn::cuda
