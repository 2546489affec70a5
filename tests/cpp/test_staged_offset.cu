// The Hopper kernel stages O in the swizzled Q buffer at addresses from staged_offset (32-bit
// shared addresses instead of CuTe's 64-bit generic ones), with stmatrix. Checked here, on the
// host, against CuTe's own addressing of the buffer's layout for every element (the TMA store
// reads the tile through that layout), and the stmatrix lanes' addresses against staged_offset.
#include <gtest/gtest.h>

#include "sm90/device_helpers.cuh"
#include "sm90/kernel_traits.cuh"

namespace {

template <class Element, int kHeadDim>
int mismatches() {
  using Traits = liteattn::sm90::KernelTraits<Element, kHeadDim>;
  constexpr int kBlockM = Traits::kBlockM;
  using Layout = typename Traits::SmemLayoutQ;  // (rows, head dim, buffer)
  alignas(1024) static Element buffer[cute::cosize_v<Layout>];
  auto tile = cute::make_tensor(cute::make_smem_ptr(buffer), Layout{});
  const auto* start = reinterpret_cast<const char*>(buffer);
  int bad = 0;
  for (int b = 0; b < 2; ++b) {
    const auto* buffer_start = reinterpret_cast<const char*>(&tile(0, 0, b));
    for (int row = 0; row < kBlockM; ++row)
      for (int column = 0; column < kHeadDim; ++column) {
        const auto expected = reinterpret_cast<const char*>(&tile(row, column, b)) - buffer_start;
        bad += expected != std::ptrdiff_t(liteattn::sm90::staged_offset<kBlockM>(row, column));
      }
    EXPECT_EQ(buffer_start - start, b * kBlockM * kHeadDim * std::ptrdiff_t(sizeof(Element)));
  }
  return bad;
}

TEST(StagedOffset, MatchesCuteAddressingOfTheQBuffer) {
  EXPECT_EQ((mismatches<cutlass::bfloat16_t, 128>()), 0);
  EXPECT_EQ((mismatches<cutlass::half_t, 128>()), 0);
  EXPECT_EQ((mismatches<cutlass::bfloat16_t, 64>()), 0);
  EXPECT_EQ((mismatches<cutlass::half_t, 64>()), 0);
}

// The epilogue stores O with stmatrix .x4 (PTX semantics: lane j gives the address of row j % 8 of
// tile j / 8; that row's 16-bit pair k comes from register j / 8 of lane 4 (j % 8) + k). Lane t's
// register i holds the accumulator pair of row t / 4 + 8 (i % 2) of its warp's 16 rows, columns
// 8 (nb + i / 2) + 2 (t % 4) and + 1 (the kernel's register order). Emulates every store of a
// work tile and counts the elements that do not land at staged_offset(row, column).
template <int kBlockM, int kHeadDim>
int stmatrix_mismatches() {
  using liteattn::sm90::stmatrix_lane_block;
  using liteattn::sm90::stmatrix_lane_row;
  using liteattn::sm90::staged_offset;
  int bad = 0;
  for (int warp_row0 = 0; warp_row0 < kBlockM; warp_row0 += 16)
    for (int nb = 0; nb < kHeadDim / 8; nb += 2)
      for (int addressing_lane = 0; addressing_lane < 32; ++addressing_lane) {
        const int tile = addressing_lane / 8, tile_row = addressing_lane % 8;
        // As the consumer forms it: its rows from the warp's first, then the lane's row.
        const uint32_t row_start = staged_offset<kBlockM>(warp_row0 + stmatrix_lane_row(addressing_lane),
                                                          (nb + stmatrix_lane_block(addressing_lane)) * 8);
        for (int k = 0; k < 4; ++k) {
          const int source_lane = 4 * tile_row + k;
          const int row = warp_row0 + source_lane / 4 + 8 * (tile % 2);
          const int column = 8 * (nb + tile / 2) + 2 * (source_lane % 4);
          for (int half = 0; half < 2; ++half)
            bad += row_start + 4 * k + 2 * half != staged_offset<kBlockM>(row, column + half);
        }
      }
  return bad;
}

TEST(StagedOffset, StmatrixStoresEveryElementWhereTheTmaReadsIt) {
  using liteattn::sm90::KernelTraits;
  EXPECT_EQ((stmatrix_mismatches<KernelTraits<cutlass::bfloat16_t, 128>::kBlockM, 128>()), 0);
  EXPECT_EQ((stmatrix_mismatches<KernelTraits<cutlass::bfloat16_t, 64>::kBlockM, 64>()), 0);
}

}  // namespace
