// Scalar device helpers shared by the CUDA kernels: exp2, a NaN-propagating max, the online
// softmax's lazy reference, and packing two floats into one register of 16-bit pairs (the MMA
// operand format).
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

// The online softmax's lazy reference, shared by the kernels. A row's weights are
// exp2(s * scale_log2 - offset) against a reference that moves to the row's running max only when
// that max has grown more than kLazyRescaleLog2 (log2 units) past it. Until then the weights stay
// below 2^kLazyRescaleLog2, well inside fp32 and the 16-bit P, and O and the row sum need no
// rescale: past a row's first tiles its max rarely grows that much (bench/NOTES.md, run 44). The
// first finite max, NaN and +inf always move it (the comparison is false for NaN), so non-finite
// scores propagate as with an exact reference.
constexpr float kLazyRescaleLog2 = 8.f;

// Moves `reference` to `running_max` when needed; returns the factor by which O and the row sum
// must be rescaled (1 when it stays). A row that has seen only -inf scores has nothing to
// accumulate: its factor is 1, not exp2(-inf + inf) = NaN.
__device__ __forceinline__ float advance_reference(float running_max, float& reference, float scale_log2) {
  float scale = 1.f;
  if (!((running_max - reference) * scale_log2 <= kLazyRescaleLog2)) {
    if (running_max != neg_inf()) scale = fast_exp2((reference - running_max) * scale_log2);
    reference = running_max;
  }
  return scale;
}

// The weights' exponent offset: 0 while the reference is -inf, so that -inf scores give
// exp2(-inf) = 0 rather than NaN.
__device__ __forceinline__ float weight_offset(float reference, float scale_log2) {
  return reference == neg_inf() ? 0.f : reference * scale_log2;
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

}  // namespace liteattn::cuda
