// The Hopper kernel stages O in the swizzled Q buffer at addresses from staged_offset (32-bit
// shared addresses instead of CuTe's 64-bit generic ones). Checked here, on the host, against
// CuTe's own addressing of the buffer's layout for every element: the TMA store reads the tile
// through that layout.
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

}  // namespace
