#include "plan.hpp"

#include <cmath>
#include <numbers>

namespace liteattn {
namespace {

// Appends [begin, end) to a list, merging it with the previous range when they touch.
void append(TileRangeList& list, std::int64_t begin, std::int64_t end) {
  if (begin >= end) return;
  if (list.count > 0 && begin <= list.end[list.count - 1]) {
    if (end > list.end[list.count - 1]) list.end[list.count - 1] = static_cast<std::int32_t>(end);
    return;
  }
  list.begin[list.count] = static_cast<std::int32_t>(begin);
  list.end[list.count] = static_cast<std::int32_t>(end);
  ++list.count;
}

// Tiles that overlap any token of a range.
TileRangeList overlapping_tiles(const std::vector<TokenRange>& ranges, std::int64_t tile) {
  TileRangeList list;
  for (const auto& r : ranges) append(list, r.begin / tile, ceil_div(r.end, tile));
  return list;
}

// Tiles whose valid tokens the ranges cover completely (the last tile may be partial). Touching
// ranges cover their union: [0, 8) and [8, 16) together cover a 16-token tile, so they are
// joined before the tiles are counted.
TileRangeList covered_tiles(const std::vector<TokenRange>& ranges, std::int64_t tile, std::int64_t length) {
  std::vector<TokenRange> joined;
  for (const auto& r : ranges) {
    if (!joined.empty() && r.begin == joined.back().end) joined.back().end = r.end;
    else joined.push_back(r);
  }
  TileRangeList list;
  for (const auto& r : joined) append(list, ceil_div(r.begin, tile), r.end == length ? ceil_div(length, tile) : r.end / tile);
  return list;
}

}  // namespace

CallPlan make_plan(const AttentionArgs& args, Backend backend) {
  CallPlan p;
  p.backend = backend;
  p.tile = (backend == Backend::cpu && args.cpu_tile) ? *args.cpu_tile : tile_shape(backend, args.q.shape[3], args.q.dtype);
  p.batch = args.q.shape[0];
  p.len_q = args.q.shape[1];
  p.heads = args.q.shape[2];
  p.head_dim = args.q.shape[3];
  p.len_k = args.k.shape[1];
  p.kv_heads = args.k.shape[2];
  p.q_tiles = ceil_div(p.len_q, p.tile.m);
  p.k_tiles = ceil_div(p.len_k, p.tile.n);
  p.words = ceil_div(p.k_tiles, 32);
  p.scale = args.scale ? *args.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  p.scale_log2 = p.scale * std::numbers::log2e_v<float>;
  p.skipping = args.skip.enabled;
  p.threshold = args.skip.threshold;
  p.criterion = args.skip.criterion;
  p.order = args.skip.order;
  p.must_do = overlapping_tiles(args.must_do, p.tile.n);
  p.must_skip = covered_tiles(args.must_skip, p.tile.n, p.len_k);
  p.dense_queries = overlapping_tiles(args.dense_queries, p.tile.m);
  return p;
}

}  // namespace liteattn
