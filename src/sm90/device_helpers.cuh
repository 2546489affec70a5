// Small device helpers of the Hopper kernel: packing to 16-bit pairs (cutlass element types),
// one warpgroup GEMM, and the work tile behind a linear index (scalar math: cuda/device_math.cuh).
#pragma once

#include "cuda/device_math.cuh"
#include "sm90/kernel_traits.cuh"

namespace liteattn::sm90 {

using cuda::fast_exp2;
using cuda::max_nan;
using cuda::neg_inf;

template <class Element>
__device__ __forceinline__ uint32_t pack2(float a, float b);

template <>
__device__ __forceinline__ uint32_t pack2<cutlass::bfloat16_t>(float a, float b) {
  return cuda::pack_bf16x2(a, b);
}

template <>
__device__ __forceinline__ uint32_t pack2<cutlass::half_t>(float a, float b) {
  return cuda::pack_f16x2(a, b);
}

// Issues one warpgroup GEMM (all k blocks) as one wgmma batch. wait < 0: leave it in flight.
template <bool kZeroInit, int kWait, class TiledMma, class TA, class TB, class TC>
__device__ __forceinline__ void wg_gemm(TiledMma& tiled_mma, TA const& a, TB const& b, TC& c) {
  // A from registers (RS) when its elements are the MMA's element type, not smem descriptors.
  constexpr bool kRegisterA = !is_same_v<typename TA::engine_type::iterator, GMMA::DescriptorIterator>;
  if constexpr (kRegisterA) warpgroup_fence_operand(const_cast<TA&>(a));
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  if constexpr (kZeroInit) tiled_mma.accumulate_ = GMMA::ScaleOut::Zero;
  CUTLASS_PRAGMA_UNROLL
  for (int kb = 0; kb < size<2>(a); ++kb) {
    cute::gemm(tiled_mma, a(_, _, kb), b(_, _, kb), c);
    tiled_mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
  if constexpr (kWait >= 0) warpgroup_wait<kWait>();
  warpgroup_fence_operand(c);
  if constexpr (kRegisterA) warpgroup_fence_operand(const_cast<TA&>(a));
}

// The work tile behind a linear index: query tiles of one (b, h) are adjacent, so the CTAs that
// run at the same time share K and V of one head in L2.
struct WorkTile {
  int32_t m_block, bh, b, h;
};

__device__ __forceinline__ WorkTile decode_work_tile(int32_t index, int32_t q_tiles, int32_t heads) {
  WorkTile w;
  w.m_block = index % q_tiles;
  w.bh = index / q_tiles;
  w.b = w.bh / heads;
  w.h = w.bh % heads;
  return w;
}

}  // namespace liteattn::sm90
