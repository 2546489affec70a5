// The skip state (method.md section 4): layout and size, initial bits, the read/write swap,
// monotone masks over a trajectory, reset rules, warm-up calls, statistics, ownership.
#include <gtest/gtest.h>

#include <limits>

#include "reference_helpers.hpp"

namespace {

using namespace lt;
using liteattn::AttentionArgs;
using liteattn::Criterion;
using liteattn::SkipState;
using liteattn::StateKey;
using liteattn::VisitOrder;

// The expected full row: bits 0..nk-1 set, every later bit clear.
std::vector<std::uint32_t> full_row(i64 nk) {
  std::vector<std::uint32_t> row(std::size_t((nk + 31) / 32), 0u);
  for (i64 j = 0; j < nk; ++j) row[j / 32] |= 1u << (j % 32);
  return row;
}

TEST(State, SizeMatchesTheFormula) {
  // method.md: 2 * B * H * nq * ceil(nk / 32) * 4 bytes; Wan2.1-14B 720p is about 3.6 MB.
  const StateKey wan = make_state_key(1, 40, 75600, 75600, {128, 128});
  EXPECT_EQ(wan.q_tiles(), 591);
  EXPECT_EQ(wan.k_tiles(), 591);
  EXPECT_EQ(wan.words_per_row(), 19);
  EXPECT_EQ(wan.mask_bytes(), 2u * 40 * 591 * 19 * 4);
  EXPECT_NEAR(double(wan.mask_bytes()) / 1e6, 3.6, 0.05);
  const StateKey odd = make_state_key(2, 3, 7, 300, {16, 16}, true);
  EXPECT_EQ(odd.rows(), 2 * 3 * 1);
  EXPECT_EQ(odd.words_per_row(), 1);
  EXPECT_EQ(odd.row_max_bytes(), 2u * 3 * 7 * 4);
  // The kept counts (B * H), one word for the GPU kernel's work-tile counter, one per row for its work order.
  EXPECT_EQ(odd.work_order_offset(), 2 * 3 + 1);
  EXPECT_EQ(odd.kept_words(), 2 * 3 + 1 + 2 * 3 * 1);
  EXPECT_EQ(odd.total_bytes(), odd.mask_bytes() + odd.row_visits_bytes() + odd.row_max_bytes() + 4u * (2 * 3 + 1 + 6));
}

TEST(State, InitialMaskIsAllOnesBelowNkAndZeroPastIt) {
  for (i64 nk : {1, 5, 31, 32, 33, 64, 65, 100}) {
    SkipState state;
    const auto key = make_state_key(2, 3, 40, nk * 16 - 3, {16, 16}, true);
    EXPECT_TRUE(state.prepare(key));
    const MaskGeometry g(2, 3, 40, nk * 16 - 3, {16, 16});
    ASSERT_EQ(g.nk, nk);
    const auto mask = state.read_mask();
    ASSERT_EQ(mask.size(), g.size());
    const auto row = full_row(nk);
    for (i64 r = 0; r < g.B * g.H * g.nq; ++r)
      for (i64 w = 0; w < g.words; ++w) EXPECT_EQ(mask[r * g.words + w], row[w]) << "nk " << nk;
    EXPECT_EQ(state.last_read_mask(), mask) << "both buffers start full";
    for (float m : state.row_max()) EXPECT_TRUE(std::isnan(m));
    const auto stats = state.stats();
    EXPECT_EQ(stats.calls, 0);
    EXPECT_EQ(stats.next_sparsity(), 0.0);
    EXPECT_EQ(stats.tiles_per_head, 2 * g.nq * nk);
  }
}

// A problem with distance-decaying logits that skips a good share of tiles.
Problem local_problem(std::uint64_t seed, i64 Lq = 100, i64 Lk = 523, i64 H = 2, DType dtype = DType::f32, i64 D = 16) {
  Problem p(1, Lq, Lk, H, H, D, dtype);
  p.randomize(seed);
  p.add_locality(4.0 / 256.0);
  return p;
}

AttentionArgs skip_args(const Problem& p, float threshold, TileShape tile = {16, 16},
                        VisitOrder order = VisitOrder::descending, Criterion criterion = Criterion::running) {
  auto a = p.args();
  a.cpu_tile = tile;
  a.skip.enabled = true;
  a.skip.threshold = threshold;
  a.skip.order = order;
  a.skip.criterion = criterion;
  return a;
}

TEST(State, SwapAndMonotoneMasksOverATrajectory) {
  // nk = 33: two words per row, one bit used in the second.
  Problem p = local_problem(1);
  const MaskGeometry g(1, 2, 100, 523, {16, 16});
  ASSERT_EQ(g.nk, 33);
  SkipState state;
  const float thresholds[] = {-12, -6, -2, -std::numeric_limits<float>::infinity(), -1, -3, 0};
  i64 previous_count = g.B * g.H * g.nq * g.nk;
  int call = 0;
  for (float t : thresholds) {
    p.randomize(10 + call);  // fresh noise every call: decisions move around
    p.add_locality(4.0 / 256.0);
    const auto order = call % 3 == 0 ? VisitOrder::alternate : call % 3 == 1 ? VisitOrder::diagonal_first : VisitOrder::descending;
    auto args = skip_args(p, t, {16, 16}, order);
    state.prepare(liteattn::state_key(args));
    const auto before = state.read_mask();
    liteattn::attention(args, state);
    EXPECT_EQ(state.last_read_mask(), before) << "the call read what read_mask() showed";
    const auto after = state.read_mask();
    for (std::size_t n = 0; n < after.size(); ++n) {
      EXPECT_EQ(after[n] & ~before[n], 0u) << "written mask not a subset of the read mask, call " << call;
      if (n % 2 == 1) { EXPECT_EQ(after[n] & ~1u, 0u) << "bits past nk"; }
    }
    const i64 count = popcount(after);
    EXPECT_LE(count, previous_count);
    if (std::isinf(t)) { EXPECT_EQ(count, previous_count) << "threshold -inf keeps every visited tile"; }
    previous_count = count;
    EXPECT_EQ(state.stats().calls, ++call);
  }
  EXPECT_LT(previous_count, g.B * g.H * g.nq * g.nk / 2) << "the trajectory should skip a good share";
  EXPECT_GT(previous_count, 0);
}

TEST(State, SkippingDisabledLeavesTheStateUntouched) {
  Problem p = local_problem(2);
  SkipState state;
  liteattn::attention(skip_args(p, -3.0f, {16, 16}, VisitOrder::alternate, Criterion::previous), state);
  const auto bytes = state_bytes(state);
  auto warmup = skip_args(p, -3.0f, {16, 16}, VisitOrder::alternate, Criterion::previous);
  warmup.skip.enabled = false;
  liteattn::attention(warmup, state);
  EXPECT_EQ(state_bytes(state), bytes);
  // ... and a warm-up call is plain dense attention.
  const auto ref = reference_attention(p, default_scale(p.D), {16, 16});
  EXPECT_LE(rel_l2_out(p.out, ref), 1e-4);  // fp32 logits with large locality terms: see test_dense
  // A schedule's warm-up steps do the same.
  const auto schedule = liteattn::ThresholdSchedule::constant(-3.0f, 2);
  for (int step = 0; step < 2; ++step) {
    schedule.apply(step, warmup.skip);
    liteattn::attention(warmup, state);
  }
  EXPECT_EQ(state_bytes(state), bytes);
  schedule.apply(2, warmup.skip);
  liteattn::attention(warmup, state);
  EXPECT_NE(state_bytes(state), bytes);
}

// Runs two skipping calls on `state` so that its mask is no longer full.
void make_sparse(SkipState& state, const AttentionArgs& args) {
  liteattn::attention(args, state);
  liteattn::attention(args, state);
  ASSERT_GT(state.stats().next_sparsity(), 0.0);
  ASSERT_GT(state.stats().last_sparsity(), 0.0);
}

bool full(const std::vector<std::uint32_t>& mask, const StateKey& key) {
  const auto row = full_row(key.k_tiles());
  for (std::size_t n = 0; n < mask.size(); ++n)
    if (mask[n] != row[n % row.size()]) return false;
  return true;
}

TEST(State, ResetsWhenTheKeyChanges) {
  // Each change gives a new problem or argument; the first call after it must read a full mask.
  Problem base = local_problem(3);
  const auto base_args = skip_args(base, -4.0f);
  Problem other_lq = local_problem(3, 101), other_lk = local_problem(3, 100, 530), other_h = local_problem(3, 100, 523, 1),
          other_dtype = local_problem(3, 100, 523, 2, DType::bf16), other_d = local_problem(3, 100, 523, 2, DType::f32, 24);
  Problem other_b(2, 100, 523, 2, 2, 16);
  other_b.randomize(3);
  other_b.add_locality(4.0 / 256.0);
  const std::vector<std::pair<const char*, AttentionArgs>> changes = {
      {"len_q", skip_args(other_lq, -4.0f)},
      {"len_k", skip_args(other_lk, -4.0f)},
      {"heads", skip_args(other_h, -4.0f)},
      {"dtype", skip_args(other_dtype, -4.0f)},
      {"head_dim", skip_args(other_d, -4.0f)},
      {"batch", skip_args(other_b, -4.0f)},
      {"tile", skip_args(base, -4.0f, {16, 32})},
      {"tile m", skip_args(base, -4.0f, {32, 16})},
      {"criterion", skip_args(base, -4.0f, {16, 16}, VisitOrder::descending, Criterion::previous)},
  };
  for (const auto& [what, args] : changes) {
    SkipState state;
    make_sparse(state, base_args);
    const auto old_key = state.key();
    liteattn::attention(args, state);
    EXPECT_FALSE(state.key() == old_key) << what;
    EXPECT_EQ(state.key(), liteattn::state_key(args)) << what;
    EXPECT_TRUE(full(state.last_read_mask(), state.key())) << what << ": the call after a change reads a fresh mask";
    EXPECT_EQ(state.stats().calls, 1) << what;
    // Going back resets again.
    liteattn::attention(base_args, state);
    EXPECT_TRUE(full(state.last_read_mask(), state.key())) << what;
  }
  // Same key, different threshold or order: no reset.
  SkipState state;
  make_sparse(state, base_args);
  const auto before = state.read_mask();
  liteattn::attention(skip_args(base, -1.0f, {16, 16}, VisitOrder::diagonal_first), state);
  EXPECT_EQ(state.last_read_mask(), before);
  EXPECT_EQ(state.stats().calls, 3);
}

TEST(State, PrepareAndRequestReset) {
  Problem p = local_problem(4);
  const auto args = skip_args(p, -4.0f);
  SkipState state;
  EXPECT_FALSE(state.shaped());
  EXPECT_TRUE(state.read_mask().empty());
  EXPECT_TRUE(state.prepare(liteattn::state_key(args)));
  EXPECT_FALSE(state.prepare(liteattn::state_key(args)));
  make_sparse(state, args);
  EXPECT_FALSE(state.prepare(liteattn::state_key(args)));
  EXPECT_FALSE(full(state.read_mask(), state.key()));
  state.request_reset();
  EXPECT_FALSE(full(state.read_mask(), state.key())) << "a request takes effect at the next prepare";
  liteattn::attention(args, state);
  EXPECT_TRUE(full(state.last_read_mask(), state.key()));
  EXPECT_EQ(state.stats().calls, 1);
  state.request_reset();
  EXPECT_TRUE(state.prepare(liteattn::state_key(args)));
  EXPECT_TRUE(full(state.read_mask(), state.key()));
  EXPECT_FALSE(state.prepare(liteattn::state_key(args)));
}

TEST(State, PrepareRejectsABadKeyAndKeepsItsBuffersWhenAllocationFails) {
  Problem p = local_problem(4);
  const auto args = skip_args(p, -4.0f);
  bool fail_next = false;
  liteattn::StateAllocator flaky;
  flaky.allocate = [&](std::size_t bytes, liteattn::Device) -> void* {
    if (fail_next) throw std::bad_alloc();
    return ::operator new(bytes);
  };
  flaky.release = [](void* ptr, liteattn::Device) { ::operator delete(ptr); };
  SkipState state(flaky);
  make_sparse(state, args);
  const auto key = state.key();
  const auto mask = state.read_mask();
  auto argument_of_prepare = [&](const StateKey& bad) {
    try {
      state.prepare(bad);
    } catch (const liteattn::ArgumentError& e) {
      return e.argument();
    }
    return std::string("<no ArgumentError>");
  };
  StateKey zero_tile = key, negative = key, huge = key;
  zero_tile.tile = {0, 0};
  negative.batch = -1;
  huge.batch = huge.heads = std::int64_t(1) << 30;  // rows alone would need 2^60 words
  for (const StateKey& bad : {zero_tile, negative, huge}) EXPECT_EQ(argument_of_prepare(bad), "state") << bad.describe();
  // A valid new key whose allocation fails: the state keeps its key and its mask.
  StateKey other = key;
  other.len_k += 64;
  fail_next = true;
  EXPECT_THROW(state.prepare(other), std::bad_alloc);
  fail_next = false;
  EXPECT_TRUE(state.key() == key);
  EXPECT_EQ(state.read_mask(), mask);
}

TEST(State, AllocatesOnlyWhenTheKeyChanges) {
  int allocations = 0, releases = 0;
  liteattn::StateAllocator counting;
  counting.allocate = [&](std::size_t bytes, liteattn::Device) {
    ++allocations;
    return ::operator new(bytes);
  };
  counting.release = [&](void* ptr, liteattn::Device) {
    ++releases;
    ::operator delete(ptr);
  };
  Problem p = local_problem(5), q = local_problem(5, 64);
  {
    SkipState state(counting);
    for (int i = 0; i < 3; ++i) liteattn::attention(skip_args(p, -4.0f), state);
    EXPECT_EQ(allocations, 1);
    state.request_reset();
    liteattn::attention(skip_args(p, -4.0f), state);
    EXPECT_EQ(allocations, 1);
    liteattn::attention(skip_args(q, -4.0f), state);
    EXPECT_EQ(allocations, 2);
    EXPECT_EQ(releases, 1);
    // Moving hands the buffers over without copying.
    const auto mask = state.read_mask();
    SkipState moved(std::move(state));
    EXPECT_EQ(moved.read_mask(), mask);
    EXPECT_FALSE(state.shaped());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    EXPECT_EQ(allocations, 2);
  }
  EXPECT_EQ(releases, 2);
}

TEST(State, StatisticsCountTilesPerHead) {
  // Head 0 is local (a), head 1 twice as global (a / 2): head 0 skips more.
  Problem p = local_problem(6, 128, 256, 2);
  SkipState state;
  auto args = skip_args(p, -4.0f);
  const MaskGeometry g(1, 2, 128, 256, {16, 16});
  liteattn::attention(args, state);
  auto last_read = state.read_mask();
  liteattn::attention(args, state);
  const auto stats = state.stats();
  const auto next = state.read_mask();
  ASSERT_EQ(stats.computed_per_head.size(), 2u);
  EXPECT_EQ(stats.tiles_per_head, g.nq * g.nk);
  EXPECT_EQ(stats.total_tiles(), 2 * g.nq * g.nk);
  for (i64 h = 0; h < 2; ++h) {
    i64 computed = 0, planned = 0;
    for (i64 i = 0; i < g.nq; ++i)
      for (i64 j = 0; j < g.nk; ++j) {
        computed += bit(last_read, g, 0, h, i, j);
        planned += bit(next, g, 0, h, i, j);
      }
    EXPECT_EQ(stats.computed_per_head[h], computed) << "head " << h;
    EXPECT_EQ(stats.planned_per_head[h], planned) << "head " << h;
    EXPECT_DOUBLE_EQ(stats.last_head_sparsity()[h], 1.0 - double(computed) / double(g.nq * g.nk));
  }
  EXPECT_DOUBLE_EQ(stats.last_sparsity(), 1.0 - double(popcount(last_read)) / double(stats.total_tiles()));
  EXPECT_DOUBLE_EQ(stats.next_sparsity(), 1.0 - double(popcount(next)) / double(stats.total_tiles()));
  EXPECT_GT(stats.last_head_sparsity()[0], stats.last_head_sparsity()[1]);
  EXPECT_EQ(stats.calls, 2);
}

TEST(State, CumulativeTotalsAddUpTheKeptCounts) {
  // The view's optional cumulative buffer: every call that updates the state adds its kept counts
  // (per batch and head) to it; a call without skipping and a reset leave it alone.
  Problem p = local_problem(6, 128, 256, 2);
  const auto args = skip_args(p, -4.0f);
  SkipState state;
  state.prepare(liteattn::state_key(args));
  std::vector<std::int64_t> totals = {5, 7};  // whatever the caller's totals were before
  std::vector<std::int64_t> expected = totals;
  auto with_totals = [&](AttentionArgs a) {
    a.state = state.view();
    a.state.cumulative = totals.data();
    return a;
  };
  for (int call = 0; call < 3; ++call) {
    liteattn::attention(with_totals(args));
    const auto stats = state.stats();
    for (std::size_t h = 0; h < 2; ++h) expected[h] += stats.computed_per_head[h];
    EXPECT_EQ(totals, expected) << "call " << call;
  }
  EXPECT_LT(totals[0] - 5, 3 * state.stats().tiles_per_head);  // the calls did skip
  auto dense = args;
  dense.skip.enabled = false;
  liteattn::attention(with_totals(dense));
  liteattn::reset_state(with_totals(args).state, nullptr);
  EXPECT_EQ(totals, expected);
}

TEST(State, ExplicitViewMustMatchTheCall) {
  // attention(args) with a view: the state is used as given and advanced in place.
  Problem p = local_problem(7);
  auto args = skip_args(p, -4.0f);
  SkipState state;
  state.prepare(liteattn::state_key(args));
  args.state = state.view();
  liteattn::attention(args);
  liteattn::attention(args);
  EXPECT_EQ(state.stats().calls, 2);
  EXPECT_GT(state.stats().next_sparsity(), 0.0);
}

}  // namespace
