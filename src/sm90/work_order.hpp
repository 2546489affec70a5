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

// Enqueues, before a skipping call's kernel: the kept counts zeroed, and the work order written
// after them in `kept` (SkipStateView): position p runs work tile order[p]. The first
// f = min(grid, rows) positions are the first round, work tiles 0 .. f - 1 in index order: the
// kernel's CTA b runs work tile b at once, while this order is written (the kernel is this one's
// programmatic dependent), and the work-tile counter, from which the CTAs take the later
// positions, is set to f. The later positions order the other work tiles by their work, the
// number of key tiles a work tile's read row keeps (every one for a dense query tile; must_do
// and must_skip are left out: the order is a priority only, and any order computes the same
// results):
// - (batch, head) pairs by their total work after the first round, largest first, each pair's
//   query tiles together in index order: the CTAs of one moment work on neighbouring query tiles
//   of one head and share its K and V in L2, and a head that kept much more than the others does
//   not run last;
// - the last min(kShortTailRounds * grid, kMaxShortTail) positions re-sorted by work, largest
//   first, so that the CTAs run out of work within a short work tile of each other.
void enqueue_work_order(const SkipStateView& state, const CallPlan& plan, std::int64_t grid, void* stream);

}  // namespace liteattn::sm90
