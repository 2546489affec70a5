// The order in which a skipping call's CTAs take their work tiles (bench/NOTES.md run 46).
#pragma once

#include <cstdint>

#include "core/plan.hpp"
#include "liteattn/skip_state.hpp"

namespace liteattn::sm90 {

// The last work tiles of about this many rounds of the grid run shortest last.
// LITEATTN_SM90_SHORT_TAIL_ROUNDS: build-time override for tuning experiments only.
#ifndef LITEATTN_SM90_SHORT_TAIL_ROUNDS
#define LITEATTN_SM90_SHORT_TAIL_ROUNDS 4
#endif
inline constexpr int kShortTailRounds = LITEATTN_SM90_SHORT_TAIL_ROUNDS;
inline constexpr int kMaxShortTail = 2048;
// Up to this many (batch, head) pairs are ordered by their work; more keep index order.
inline constexpr int kMaxOrderedHeads = 1024;

// Enqueues, before a skipping call's kernel: the kept counts and the work-tile counter zeroed,
// and the work order written after them in `kept` (SkipStateView). A work tile's work is the
// number of key tiles its read row keeps (every one for a dense query tile; must_do and
// must_skip are left out: the order is a priority only, and any order computes the same
// results). The order:
// - (batch, head) pairs by their total work, largest first, each pair's query tiles together in
//   index order: the CTAs of one moment work on neighbouring query tiles of one head and share
//   its K and V in L2, and a head that kept much more than the others does not run last;
// - the last min(kShortTailRounds * grid, kMaxShortTail) positions re-sorted by work, largest
//   first, so that the CTAs run out of work within a short work tile of each other.
// The attention kernel, launched next as its programmatic dependent, may start while this runs:
// its CTAs run their first work tiles (CTA b: work tile b) meanwhile and take the order's positions
// after it, passing over the work tiles that ran first.
void enqueue_work_order(const SkipStateView& state, const CallPlan& plan, std::int64_t grid, void* stream);

}  // namespace liteattn::sm90
