// The skip policy of one query tile: which key tiles it visits, in which order, how a row votes,
// and which bits it writes. One type for every backend, host and device, so that the CPU
// reference, a kernel's producer and its consumers can never walk different tile sequences.
#pragma once

#include <cstdint>

#include "plan.hpp"

namespace liteattn {

// A row votes keep unless (m_loc - reference) * c <= threshold. Written as a negated `<=` so
// that a NaN anywhere in the comparison votes keep (method.md section 3): bad values in one call
// must never remove tiles for the rest of the trajectory.
LITEATTN_HD bool row_votes_keep(float tile_row_max, float reference, float scale_log2, float threshold) {
  return !((tile_row_max - reference) * scale_log2 <= threshold);
}

// The reference a row compares with: the `previous` criterion's stored max when one exists,
// otherwise the running max before the tile (which is -inf before the first visited tile).
LITEATTN_HD bool uses_running_reference(Criterion criterion, float stored_row_max) {
  return criterion == Criterion::running || stored_row_max != stored_row_max;  // NaN: none stored
}

class QueryTilePolicy {
 public:
  // read_row: the read mask of (b, h, query_tile), or nullptr when the call runs dense.
  // row_visits: that row's call counter (the alternate order's direction).
  LITEATTN_HD QueryTilePolicy(const CallPlan& plan, std::int64_t query_tile, const std::uint32_t* read_row,
                              std::uint32_t row_visits)
      : plan_(plan), read_row_(read_row), k_tiles_(static_cast<std::int32_t>(plan.k_tiles)) {
    dense_ = read_row == nullptr || plan.dense_queries.contains(static_cast<std::int32_t>(query_tile));
    switch (plan.order) {
      case VisitOrder::descending: mode_ = Mode::descending; break;
      case VisitOrder::alternate: mode_ = (row_visits & 1u) ? Mode::ascending : Mode::descending; break;
      case VisitOrder::diagonal_first: mode_ = Mode::diagonal; break;
    }
    // The key position aligned with the query tile's centre, scaled when Lq != Lk.
    const std::int64_t first_row = query_tile * plan.tile.m;
    const std::int64_t rows = (plan.len_q - first_row) < plan.tile.m ? (plan.len_q - first_row) : plan.tile.m;
    const std::int64_t centre = first_row + rows / 2;
    const std::int64_t key_pos = centre * plan.len_k / plan.len_q;
    const std::int64_t tile = key_pos / plan.tile.n;
    diagonal_tile_ = static_cast<std::int32_t>(tile < k_tiles_ - 1 ? tile : k_tiles_ - 1);
  }

  LITEATTN_HD bool dense() const { return dense_; }
  LITEATTN_HD std::int32_t k_tiles() const { return k_tiles_; }

  // Whether key tile j is computed by this call.
  LITEATTN_HD bool visits(std::int32_t tile) const {
    if (plan_.must_skip.contains(tile)) return false;
    if (dense_) return true;
    return ((read_row_[tile >> 5] >> (tile & 31)) & 1u) || plan_.must_do.contains(tile);
  }

  // The key tile at position p (0 <= p < k_tiles) of the visit order, visited or not.
  LITEATTN_HD std::int32_t tile_at(std::int32_t p) const {
    if (mode_ == Mode::descending) return k_tiles_ - 1 - p;
    if (mode_ == Mode::ascending) return p;
    // Diagonal first: j0, j0+1, j0-1, j0+2, j0-2, ..., then the rest of the longer side.
    const std::int32_t j0 = diagonal_tile_;
    const std::int32_t below = j0, above = k_tiles_ - 1 - j0;
    const std::int32_t both = below < above ? below : above;
    if (p == 0) return j0;
    if (p <= 2 * both) {
      const std::int32_t distance = (p + 1) / 2;
      return (p & 1) ? j0 + distance : j0 - distance;
    }
    const std::int32_t beyond = p - 2 * both;
    return above > below ? j0 + both + beyond : j0 - both - beyond;
  }

  // The position of the first visited tile at or after position p; k_tiles when none is left.
  // Iterate with: for (p = next(0); p < k_tiles(); p = next(p + 1)) use tile_at(p).
  LITEATTN_HD std::int32_t next(std::int32_t p) const {
    while (p < k_tiles_ && !visits(tile_at(p))) ++p;
    return p;
  }

  // The written bit of a tile this call visited, given whether any valid row voted keep.
  // Tiles the call did not visit are written 0 (validation keeps must_do and must_skip apart,
  // so a must_do tile is always visited).
  LITEATTN_HD bool writes_keep(std::int32_t tile, bool any_row_voted_keep) const {
    return writes_keep(plan_, dense_, tile, any_row_voted_keep);
  }
  // The same rule for a caller that kept only the policy's dense() flag (a kernel that writes
  // the mask after the policy object is gone).
  LITEATTN_HD static bool writes_keep(const CallPlan& plan, bool dense, std::int32_t tile, bool any_row_voted_keep) {
    return any_row_voted_keep || dense || plan.must_do.contains(tile);
  }

 private:
  enum class Mode : std::uint8_t { descending, ascending, diagonal };
  const CallPlan& plan_;
  const std::uint32_t* read_row_;
  std::int32_t k_tiles_;
  std::int32_t diagonal_tile_ = 0;
  bool dense_ = false;
  Mode mode_ = Mode::descending;
};

}  // namespace liteattn
