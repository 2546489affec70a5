// Small device helpers of the Hopper kernel: packing to 16-bit pairs (cutlass element types),
// the online softmax's lazy reference, one warpgroup GEMM, and the work tile behind a linear
// index (scalar math: cuda/device_math.cuh).
#pragma once

#include "cuda/device_math.cuh"
#include "sm90/kernel_traits.cuh"

namespace liteattn::sm90 {

using cuda::fast_exp2;
using cuda::max_nan;
using cuda::neg_inf;
using cuda::reciprocal_or_zero;

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

// Four 8 x 8 tiles of 16-bit pairs in one store (stmatrix .x4): each lane's register i holds
// row lane / 4, columns 2 (lane % 4) and + 1, of tile i (the wgmma accumulator's layout), and lane
// j gives the shared-window address of row j % 8 of tile j / 8 (16 contiguous bytes).
__device__ __forceinline__ void store_matrix_x4(uint32_t row_address, uint32_t tile0, uint32_t tile1,
                                                uint32_t tile2, uint32_t tile3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(row_address),
               "r"(tile0), "r"(tile1), "r"(tile2), "r"(tile3)
               : "memory");
}

// The byte offset of element (row, column) of a 16-bit kBlockM-row tile in 128-byte-swizzled
// K-major atoms (GMMA::Layout_K_SW128_Atom tiled to the tile: 8 x 64-element atoms, along the
// rows first) from the tile's 1024-byte-aligned start: the 16-byte chunks of a 128-byte row are
// XOR-ed with the row's index mod 8 (the TMA's 128B swizzle). Checked against CuTe's addressing
// for every element at D = 64 and 128 by tests/cpp/test_staged_offset.cu.
template <int kBlockM>
__host__ __device__ __forceinline__ constexpr uint32_t staged_offset(int row, int column) {
  return uint32_t((column / 64) * kBlockM * 128 + row * 128 + ((((column % 64) / 8) ^ (row % 8)) * 16) + (column % 8) * 2);
}

// The stmatrix .x4 that stores 8-column blocks nb and nb + 1 (nb even) of a warp's 16
// accumulator rows takes its tiles in the order (rows 0-7, block nb), (rows 8-15, nb), (rows 0-7,
// nb + 1), (rows 8-15, nb + 1); lane j addresses row j % 8 of tile j / 8, i.e. the warp's row
// stmatrix_lane_row(j) in block nb + stmatrix_lane_block(j). Checked against staged_offset for
// every element by tests/cpp/test_staged_offset.cu.
__host__ __device__ __forceinline__ constexpr int stmatrix_lane_row(int lane) { return 8 * ((lane / 8) % 2) + lane % 8; }
__host__ __device__ __forceinline__ constexpr int stmatrix_lane_block(int lane) { return lane / 16; }

// The online softmax's lazy reference. A row's weights are exp2(s * scale_log2 - offset) against
// a reference that moves to the row's running max only when that max has grown more than
// kLazyRescaleLog2 (log2 units) past it. Until then the weights stay below 2^kLazyRescaleLog2,
// well inside fp32 and the 16-bit P, and O and the row sum need no rescale: past a row's first
// tiles its max rarely grows that much (+0.7-1.4 % dense on H100, bench/NOTES.md run 44; the
// portable kernel keeps the exact reference: there the per-row branch cost 3-9 %). The first
// finite max, NaN and +inf always move it (the comparison is false for NaN), so non-finite scores
// propagate as with an exact reference.
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
