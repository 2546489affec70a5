// The skip state's buffers as the kernels see them: one struct in both kernels' parameters.
#pragma once

#include <cstdint>

#include "liteattn/skip_state.hpp"

namespace liteattn::cuda {

struct SkipStatePointers {
  std::uint32_t* mask = nullptr;        // both buffers, (2, rows, words)
  std::uint32_t* row_visits = nullptr;  // per row: the call counter (its parity picks the read buffer)
  float* row_max = nullptr;             // criterion previous only
  std::uint32_t* kept = nullptr;        // per (b, h): key tiles computed by the call
  unsigned long long* cumulative = nullptr;  // optional running totals of the kept counts (null: none)

  static SkipStatePointers of(const SkipStateView& view) {
    return {view.mask, view.row_visits, view.row_max, view.kept, reinterpret_cast<unsigned long long*>(view.cumulative)};
  }
};

}  // namespace liteattn::cuda
