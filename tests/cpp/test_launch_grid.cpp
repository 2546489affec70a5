// The Hopper kernel's grid size: never more rounds of work tiles than one CTA per SM would take,
// and, for equal work tiles, no more CTAs than those rounds need.
#include <gtest/gtest.h>

#include <cstdint>

#include "sm90/launch_grid.hpp"

namespace {

using liteattn::sm90::launch_grid;

std::int64_t rounds(std::int64_t work_tiles, std::int64_t grid) { return (work_tiles + grid - 1) / grid; }

TEST(LaunchGrid, EqualWorkTilesUseTheFewestCtasForTheSameRounds) {
  for (std::int64_t sms : {1, 7, 114, 132}) {
    for (std::int64_t tiles = 1; tiles <= 3000; ++tiles) {
      const std::int64_t one_per_sm = tiles < sms ? tiles : sms;
      const std::int64_t grid = launch_grid(tiles, sms, true);
      ASSERT_GE(grid, 1) << tiles << " tiles, " << sms << " SMs";
      ASSERT_LE(grid, one_per_sm) << tiles << " tiles, " << sms << " SMs";
      ASSERT_EQ(rounds(tiles, grid), rounds(tiles, one_per_sm)) << tiles << " tiles, " << sms << " SMs";
      if (grid > 1) ASSERT_GT(rounds(tiles, grid - 1), rounds(tiles, grid)) << tiles << " tiles, " << sms << " SMs";
    }
  }
}

TEST(LaunchGrid, TheBenchmarkShapesOnAnH100) {
  // (L, H) = (8192, 40), (32760, 12), (32760, 40), (75600, 40) at 128-row query tiles.
  EXPECT_EQ(launch_grid(2560, 132, true), 128);
  EXPECT_EQ(launch_grid(3072, 132, true), 128);
  EXPECT_EQ(launch_grid(10240, 132, true), 132);
  EXPECT_EQ(launch_grid(23640, 132, true), 132);
}

TEST(LaunchGrid, UnequalWorkTilesKeepOneCtaPerSm) {
  EXPECT_EQ(launch_grid(2560, 132, false), 132);
  EXPECT_EQ(launch_grid(100, 132, false), 100);
  EXPECT_EQ(launch_grid(100, 132, true), 100);
}

}  // namespace
