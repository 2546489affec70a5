// How many CTAs the Hopper kernel's persistent grid launches. No CUDA here, so it is tested on
// any host.
#pragma once

#include <cstdint>

namespace liteattn::sm90 {

// One CTA per SM (fewer when there are fewer work tiles), except when every work tile holds the
// same work (calls without skipping, which take work tiles round robin): then the fewest CTAs
// that still take as many rounds, so that a last round that would run partly empty is spread over
// all rounds. The makespan in work tiles is the same, and on a power-bound card the SMs left idle
// let the others clock higher (+0.9 % at (8192, 40), +1.5 % at (32760, 12) on an H100,
// bench/NOTES.md run 20). Skipping calls keep every SM: their work tiles differ, and the work
// counter balances them.
constexpr std::int64_t launch_grid(std::int64_t work_tiles, std::int64_t sm_count, bool equal_work_tiles) {
  const std::int64_t grid = work_tiles < sm_count ? work_tiles : sm_count;
  if (!equal_work_tiles || grid <= 0) return grid;
  const std::int64_t rounds = (work_tiles + grid - 1) / grid;
  return (work_tiles + rounds - 1) / rounds;
}

}  // namespace liteattn::sm90
