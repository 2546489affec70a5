// What a backend needs to run one call, resolved once on the host from AttentionArgs:
// tile counts, the scale in log2 units, ranges turned into key/query tile ranges. The struct is
// trivially copyable so a GPU backend can pass it to its kernel by value.
#pragma once

#include <cstdint>

#include "liteattn/attention.hpp"

#if defined(__CUDACC__)
#define LITEATTN_HD __host__ __device__ __forceinline__
#else
#define LITEATTN_HD inline
#endif

namespace liteattn {

// Ranges per list a call may pass (after merging neighbours at tile granularity).
inline constexpr int kMaxRanges = 16;

struct TileRangeList {
  int count = 0;
  std::int32_t begin[kMaxRanges] = {};
  std::int32_t end[kMaxRanges] = {};  // half-open

  LITEATTN_HD bool contains(std::int32_t tile) const {
    for (int r = 0; r < count; ++r)
      if (tile >= begin[r] && tile < end[r]) return true;
    return false;
  }
};

struct CallPlan {
  Backend backend = Backend::cpu;
  TileShape tile{};
  std::int64_t batch = 0, heads = 0, kv_heads = 0, len_q = 0, len_k = 0, head_dim = 0;
  std::int64_t q_tiles = 0, k_tiles = 0, words = 0;

  float scale = 0.0f;       // applied to raw q.k
  float scale_log2 = 0.0f;  // scale * log2(e): raw q.k -> log2 units

  bool skipping = false;    // reads and writes the state
  float threshold = 0.0f;
  Criterion criterion = Criterion::running;
  VisitOrder order = VisitOrder::descending;

  TileRangeList must_do;        // key tiles always computed
  TileRangeList must_skip;      // key tiles never computed
  TileRangeList dense_queries;  // query tiles that run dense
};

// Every check of validate() except those of the skip state (used before a state is shaped);
// returns the backend that serves the call (select_backend, which the checks need anyway).
Backend validate_without_state(const AttentionArgs& args);
// validate(), returning the serving backend, so that a call selects it once.
Backend validate_and_select(const AttentionArgs& args);

// Resolves validated arguments into a plan (does not validate).
CallPlan make_plan(const AttentionArgs& args, Backend backend);

}  // namespace liteattn
