// Hand-built cases for each rule of method.md. Logits are set directly: q row r is the unit
// vector e_r and k column c holds logit(r, c) in coordinate r, so raw q.k = logit(r, c). The
// scale is 1/log2(e), so scale * log2(e) = 1 and logits are in the threshold's log2 units.
#include <gtest/gtest.h>

#include <limits>
#include <numbers>
#include <set>

#include "core/skip_policy.hpp"
#include "reference_helpers.hpp"

namespace {

using namespace lt;
using liteattn::AttentionArgs;
using liteattn::Criterion;
using liteattn::SkipState;
using liteattn::TokenRange;
using liteattn::VisitOrder;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kUnitScale = float(1.0 / std::numbers::log2e);
using Logit = std::function<float(i64 r, i64 c)>;
using Tiles = std::set<i64>;

// A B=1, H=1 problem with designed logits. alloc_q / alloc_k > Lq / Lk allocate more rows than
// the views show (the extra rows play padding rows / columns that must never be read).
struct Hand {
  i64 Lq, Lk;
  TileShape tile;
  Problem p;
  LseTensor lse;

  Hand(i64 Lq_, i64 Lk_, TileShape tile_, i64 alloc_q = 0, i64 alloc_k = 0)
      : Lq(Lq_), Lk(Lk_), tile(tile_),
        p(1, std::max(Lq_, alloc_q), std::max(Lk_, alloc_k), 1, 1, std::max<i64>(std::max(Lq_, alloc_q), 2)),
        lse(1, 1, Lq_) {
    std::mt19937_64 rng(3);
    p.v.fill_normal(rng);
    p.q.fill(0.0f);
    for (i64 r = 0; r < p.Lq; ++r) p.q.set(0, r, 0, r, 1.0f);
  }

  // Sets logit(r, c) for every allocated row and column (padding ones included).
  void set_logits(const Logit& logit) {
    for (i64 c = 0; c < p.Lk; ++c)
      for (i64 r = 0; r < p.D; ++r) p.k.set(0, c, 0, r, r < p.Lq ? logit(r, c) : 0.0f);
  }

  AttentionArgs args(float threshold = -10.0f, Criterion criterion = Criterion::running,
                     VisitOrder order = VisitOrder::descending) const {
    AttentionArgs a = p.args(false);
    a.q.shape[1] = Lq;
    a.out.shape[1] = Lq;
    a.k.shape[1] = Lk;
    a.v.shape[1] = Lk;
    a.lse = lse.view();
    a.scale = kUnitScale;
    a.cpu_tile = tile;
    a.skip.enabled = true;
    a.skip.threshold = threshold;
    a.skip.criterion = criterion;
    a.skip.order = order;
    return a;
  }

  // The problem as the views show it (for the fp64 reference).
  Problem visible() const {
    Problem v(1, Lq, Lk, 1, 1, p.D);
    for (i64 d = 0; d < p.D; ++d) {
      for (i64 l = 0; l < Lq; ++l) v.q.set(0, l, 0, d, p.q.get(0, l, 0, d));
      for (i64 l = 0; l < Lk; ++l) {
        v.k.set(0, l, 0, d, p.k.get(0, l, 0, d));
        v.v.set(0, l, 0, d, p.v.get(0, l, 0, d));
      }
    }
    return v;
  }

  Reference reference(const TileKeep& keep = {}) const { return reference_attention(visible(), kUnitScale, tile, keep); }

  // out / lse of the visible rows against a reference.
  double out_error(const Reference& ref) const {
    std::vector<double> a, b;
    for (i64 l = 0; l < Lq; ++l)
      for (i64 d = 0; d < p.D; ++d) {
        a.push_back(p.out.get(0, l, 0, d));
        b.push_back(ref.out_at(0, l, 0, d));
      }
    return rel_l2(a, b);
  }
  double lse_error(const Reference& ref) const {
    std::vector<double> a(lse.data.begin(), lse.data.end());
    return rel_l2(a, ref.lse);
  }
};

// The key tiles of query tile i in a mask.
Tiles tiles_of(const std::vector<std::uint32_t>& mask, const Hand& h, i64 i) {
  const MaskGeometry g(1, 1, h.Lq, h.Lk, h.tile);
  Tiles t;
  for (i64 j = 0; j < g.words * 32; ++j)
    if ((mask[g.row(0, 0, i) * g.words + j / 32] >> (j % 32)) & 1u) t.insert(j);
  return t;
}
Tiles written(const SkipState& s, const Hand& h, i64 i) { return tiles_of(s.read_mask(), h, i); }

TileKeep only(const Tiles& tiles) {
  return [tiles](i64, i64, i64, i64 j) { return tiles.count(j) > 0; };
}

// Logits that depend only on the key tile of the column: value[j].
Logit per_tile(std::vector<float> value, i64 bn) {
  return [value, bn](i64, i64 c) { return value[std::size_t(c / bn)]; };
}

// --- section 3: the first visited tile -----------------------------------------------------

TEST(Rules, FirstVisitedTileIsAlwaysKeptByTheRunningCriterion) {
  // Key tile 3 is far below the others but is visited first (descending): kept, every call.
  Hand h(16, 64, {16, 16});
  h.set_logits(per_tile({0, 0, 0, -100}, 16));
  SkipState state;
  for (int call = 0; call < 3; ++call) {
    liteattn::attention(h.args(), state);
    EXPECT_EQ(written(state, h, 0), (Tiles{0, 1, 2, 3})) << "call " << call;
  }
  // The same low tile visited last is skipped.
  Hand h2(16, 64, {16, 16});
  h2.set_logits(per_tile({-100, 0, 0, 0}, 16));
  SkipState s2;
  liteattn::attention(h2.args(), s2);
  EXPECT_EQ(written(s2, h2, 0), (Tiles{1, 2, 3}));
}

TEST(Rules, DecisionTakesEffectFromTheNextCall) {
  // Tile 0 sits 5 below the row max at threshold -3: skipped, but only from the next call. Its
  // weight (2^-5 per column) is large enough to see in the output.
  Hand h(16, 64, {16, 16});
  h.set_logits(per_tile({-5, 0, 0, 0}, 16));
  SkipState state;
  liteattn::attention(h.args(-3.0f), state);
  const auto dense = h.reference();
  EXPECT_LE(h.out_error(dense), 1e-6);
  EXPECT_LE(h.lse_error(dense), 1e-6);
  EXPECT_EQ(written(state, h, 0), (Tiles{1, 2, 3}));
  liteattn::attention(h.args(-3.0f), state);
  const auto sparse = h.reference(only({1, 2, 3}));
  EXPECT_LE(h.out_error(sparse), 1e-6);
  EXPECT_LE(h.lse_error(sparse), 1e-6);
  EXPECT_GT(h.out_error(dense), 1e-3) << "tile 0 must be missing from the second call's output";
}

// --- section 2: padding rows and columns ---------------------------------------------------

TEST(Rules, PaddingColumnsNeverVoteNorContribute) {
  // Lk = 20 with 16-column tiles: tile 1 has 4 valid columns (logit -50) and 12 padding columns.
  // The memory behind the view holds logit +100 and huge values there: a backend that read
  // padding columns would keep tile 1 and ruin the output.
  for (const Criterion criterion : {Criterion::running, Criterion::previous}) {
    Hand h(16, 20, {16, 16}, 0, 32);
    h.set_logits([](i64, i64 c) { return c < 16 ? 0.0f : c < 20 ? -50.0f : 100.0f; });
    for (i64 c = 20; c < 32; ++c)
      for (i64 d = 0; d < h.p.D; ++d) h.p.v.set(0, c, 0, d, 1e6f);
    SkipState state;
    // running: call 0 descending visits tile 1 first (kept); call 1 ascending can skip it.
    // previous: call 1 compares with the stored max 0.
    const VisitOrder order = criterion == Criterion::running ? VisitOrder::alternate : VisitOrder::descending;
    liteattn::attention(h.args(-10.0f, criterion, order), state);
    EXPECT_LE(h.out_error(h.reference()), 1e-6);
    EXPECT_EQ(written(state, h, 0), (Tiles{0, 1}));
    liteattn::attention(h.args(-10.0f, criterion, order), state);
    EXPECT_EQ(written(state, h, 0), (Tiles{0})) << liteattn::to_string(criterion);
  }
}

TEST(Rules, PaddingRowsNeverVoteNorGetWritten) {
  // Lq = 20 with 16-row tiles: query tile 1 has rows 16..19 (logit -50 against key tile 0) and
  // 12 padding rows; the memory behind them would give logit +100 against key tile 0.
  Hand h(20, 32, {16, 16}, 32, 0);
  h.set_logits([](i64 r, i64 c) {
    if (r < 16) return 0.0f;
    if (r < 20) return c < 16 ? -50.0f : 0.0f;
    return c < 16 ? 100.0f : 0.0f;
  });
  for (i64 r = 20; r < 32; ++r)
    for (i64 d = 0; d < h.p.D; ++d) h.p.out.set(0, r, 0, d, 777.0f);
  SkipState state;
  liteattn::attention(h.args(), state);
  EXPECT_EQ(written(state, h, 0), (Tiles{0, 1}));
  EXPECT_EQ(written(state, h, 1), (Tiles{1}));
  EXPECT_LE(h.out_error(h.reference()), 1e-6);
  for (i64 r = 20; r < 32; ++r)
    for (i64 d = 0; d < h.p.D; ++d) ASSERT_EQ(h.p.out.get(0, r, 0, d), 777.0f) << "padding row " << r << " written";
}

// --- section 2: rows with every tile skipped ----------------------------------------------

void expect_empty_rows(const Hand& h, i64 first, i64 last) {
  for (i64 r = first; r < last; ++r) {
    EXPECT_EQ(h.lse.at(0, 0, r), -std::numeric_limits<float>::infinity()) << "row " << r;
    for (i64 d = 0; d < h.p.D; ++d) ASSERT_EQ(h.p.out.get(0, r, 0, d), 0.0f) << "row " << r;
  }
}

TEST(Rules, RowsWithEveryTileSkippedGiveZeroAndMinusInf) {
  // Through the votes: the `previous` criterion skips every tile of query tile 0 once its
  // logits fall 20 below the stored max; the next call visits nothing there.
  Hand h(32, 48, {16, 16});
  h.set_logits([](i64, i64) { return 0.0f; });
  SkipState state;
  liteattn::attention(h.args(-10.0f, Criterion::previous), state);
  h.set_logits([](i64 r, i64) { return r < 16 ? -20.0f : 0.0f; });
  liteattn::attention(h.args(-10.0f, Criterion::previous), state);
  EXPECT_EQ(written(state, h, 0), Tiles{});
  EXPECT_EQ(written(state, h, 1), (Tiles{0, 1, 2}));
  for (int call = 0; call < 2; ++call) {
    h.p.out.fill(5.0f);
    liteattn::attention(h.args(-10.0f, Criterion::previous), state);
    expect_empty_rows(h, 0, 16);
    EXPECT_EQ(written(state, h, 0), Tiles{}) << "a fully skipped row stays skipped";
    for (float m : state.row_max()) EXPECT_FALSE(std::isnan(m));
    const auto ref = h.reference(only({0, 1, 2}));
    for (i64 r = 16; r < 32; ++r) EXPECT_NEAR(h.lse.at(0, 0, r), ref.lse_at(0, 0, r), 1e-5);
    // The reference agrees when told that query tile 0 keeps nothing.
    const auto ref_empty = h.reference([](i64, i64, i64 i, i64) { return i == 1; });
    EXPECT_LE(h.out_error(ref_empty), 1e-6);
    EXPECT_LE(h.lse_error(ref_empty), 1e-6);
  }
  EXPECT_EQ(state.stats().computed_per_head[0], 3) << "only query tile 1's three tiles are computed";
}

TEST(Rules, MustSkipOfEverythingGivesZeroAndMinusInf) {
  Hand h(20, 40, {16, 16});
  h.set_logits([](i64 r, i64 c) { return float((r * 7 + c) % 5); });
  h.p.out.fill(5.0f);
  SkipState state;
  auto args = h.args();
  args.must_skip = {{0, 40}};
  liteattn::attention(args, state);
  expect_empty_rows(h, 0, 20);
  EXPECT_EQ(state.stats().computed(), 0);
  EXPECT_EQ(popcount(state.read_mask()), 0);
}

// --- section 7: must_do and must_skip ------------------------------------------------------

struct RangeCase {
  std::vector<TokenRange> must_skip;
  Tiles computed;  // Lk = 40, 16-column tiles: 0..15, 16..31, 32..39
};

TEST(Rules, MustSkipSkipsOnlyTilesItCoversWhole) {
  const std::vector<RangeCase> cases = {
      {{{16, 32}}, {0, 2}},            // exactly tile 1
      {{{17, 32}}, {0, 1, 2}},         // inside tile 1: partial cover does not skip
      {{{16, 31}}, {0, 1, 2}},         // one token short
      {{{32, 40}}, {0, 1}},            // the valid tokens of the partial last tile
      {{{33, 40}}, {0, 1, 2}},
      {{{0, 8}, {8, 16}}, {1, 2}},     // two ranges together cover tile 0
      {{{8, 16}, {16, 24}}, {0, 1, 2}},
      {{{0, 40}}, {}},
      {{{10, 35}}, {0, 2}},
  };
  for (const auto& c : cases) {
    Hand h(16, 40, {16, 16});
    h.set_logits([](i64 r, i64 col) { return float((r + col) % 3); });
    SkipState state;
    auto args = h.args();
    args.must_skip = c.must_skip;
    for (int call = 0; call < 2; ++call) {
      liteattn::attention(args, state);
      const auto ref = h.reference(only(c.computed));
      EXPECT_LE(h.out_error(ref), 1e-6) << "must_skip [" << c.must_skip[0].begin << ", " << c.must_skip[0].end << ")";
      EXPECT_EQ(state.stats().computed(), i64(c.computed.size()));
      EXPECT_EQ(written(state, h, 0), c.computed);
    }
    if (c.computed.size() == 3) continue;
    EXPECT_GT(h.out_error(h.reference()), 1e-3) << "the case must tell skipped from computed";
  }
}

TEST(Rules, MustDoKeepsEveryTileItOverlaps) {
  // Tile 1 is 50 below the others: without must_do it is skipped (descending: 2, 1, 0).
  const std::vector<std::pair<std::vector<TokenRange>, Tiles>> cases = {
      {{}, {0, 2}},
      {{{20, 21}}, {0, 1, 2}},  // one token inside tile 1
      {{{16, 32}}, {0, 1, 2}},  // exactly tile 1
      {{{15, 17}}, {0, 1, 2}},  // across the boundary of tiles 0 and 1
      {{{0, 16}}, {0, 2}},      // ends at the boundary: tile 1 not touched
      {{{32, 40}}, {0, 2}},
      {{{31, 33}}, {0, 1, 2}},
      {{{0, 1}, {39, 40}}, {0, 2}},
  };
  for (const auto& [must_do, expected] : cases) {
    Hand h(16, 40, {16, 16});
    h.set_logits(per_tile({0, -50, 0}, 16));
    SkipState state;
    auto args = h.args();
    args.must_do = must_do;
    liteattn::attention(args, state);
    EXPECT_EQ(written(state, h, 0), expected);
    liteattn::attention(args, state);
    EXPECT_EQ(state.stats().computed(), i64(expected.size()));
    EXPECT_EQ(written(state, h, 0), expected);
  }
}

TEST(Rules, MustDoBringsBackATileTheMaskSkipped) {
  Hand h(16, 40, {16, 16});
  h.set_logits(per_tile({0, -4, 0}, 16));
  SkipState state;
  auto args = h.args(-3.0f);
  liteattn::attention(args, state);
  EXPECT_EQ(written(state, h, 0), (Tiles{0, 2}));
  liteattn::attention(args, state);
  EXPECT_LE(h.out_error(h.reference(only({0, 2}))), 1e-6);
  args.must_do = {{16, 17}};
  liteattn::attention(args, state);
  EXPECT_LE(h.out_error(h.reference()), 1e-6) << "a must_do tile is computed even when the read mask skips it";
  EXPECT_EQ(state.stats().computed(), 3);
  EXPECT_EQ(written(state, h, 0), (Tiles{0, 1, 2}));
}

TEST(Rules, DenseQueryTilesVisitAndKeepEverything) {
  Hand h(32, 48, {16, 16});
  h.set_logits(per_tile({-30, 0, 0}, 16));
  SkipState state;
  auto args = h.args();
  args.dense_queries = {{20, 21}};  // query tile 1
  liteattn::attention(args, state);
  EXPECT_EQ(written(state, h, 0), (Tiles{1, 2}));
  EXPECT_EQ(written(state, h, 1), (Tiles{0, 1, 2}));
}

// --- section 4: visit orders ---------------------------------------------------------------

liteattn::CallPlan plan_for(i64 Lq, i64 Lk, TileShape tile, VisitOrder order) {
  liteattn::CallPlan p;
  p.tile = tile;
  p.batch = p.heads = p.kv_heads = 1;
  p.len_q = Lq;
  p.len_k = Lk;
  p.head_dim = 16;
  p.q_tiles = (Lq + tile.m - 1) / tile.m;
  p.k_tiles = (Lk + tile.n - 1) / tile.n;
  p.words = (p.k_tiles + 31) / 32;
  p.skipping = true;
  p.order = order;
  return p;
}

std::vector<i64> sequence(const liteattn::CallPlan& plan, i64 query_tile, std::uint32_t visits = 0,
                          const std::uint32_t* read = nullptr) {
  std::vector<std::uint32_t> ones(std::size_t(plan.words), ~0u);
  const liteattn::QueryTilePolicy policy(plan, query_tile, read ? read : ones.data(), visits);
  std::vector<i64> s;
  for (std::int32_t p = policy.next(0); p < policy.k_tiles(); p = policy.next(p + 1)) s.push_back(policy.tile_at(p));
  return s;
}

using Seq = std::vector<i64>;

TEST(Orders, TileSequencesByHand) {
  const TileShape t{16, 16};
  auto desc = plan_for(80, 80, t, VisitOrder::descending);
  EXPECT_EQ(sequence(desc, 0), (Seq{4, 3, 2, 1, 0}));
  EXPECT_EQ(sequence(desc, 3, 1), (Seq{4, 3, 2, 1, 0})) << "descending ignores the call counter";

  auto alt = plan_for(80, 80, t, VisitOrder::alternate);
  EXPECT_EQ(sequence(alt, 0, 0), (Seq{4, 3, 2, 1, 0}));
  EXPECT_EQ(sequence(alt, 0, 1), (Seq{0, 1, 2, 3, 4}));
  EXPECT_EQ(sequence(alt, 2, 2), (Seq{4, 3, 2, 1, 0}));
  EXPECT_EQ(sequence(alt, 2, 7), (Seq{0, 1, 2, 3, 4}));

  // Diagonal first, square: the aligned tile, then +1, -1, +2, -2, ..., then the longer side.
  auto diag = plan_for(80, 80, t, VisitOrder::diagonal_first);
  EXPECT_EQ(sequence(diag, 0), (Seq{0, 1, 2, 3, 4}));
  EXPECT_EQ(sequence(diag, 1), (Seq{1, 2, 0, 3, 4}));
  EXPECT_EQ(sequence(diag, 2), (Seq{2, 3, 1, 4, 0}));
  EXPECT_EQ(sequence(diag, 3), (Seq{3, 4, 2, 1, 0}));
  EXPECT_EQ(sequence(diag, 4), (Seq{4, 3, 2, 1, 0}));
  EXPECT_EQ(sequence(diag, 4, 1), (Seq{4, 3, 2, 1, 0})) << "diagonal ignores the call counter";

  // Uneven sides, Lq = 20 against Lk = 80: query tile 0 (rows 0..15, centre 8) maps to key 32,
  // tile 2; query tile 1 (rows 16..19, centre 18) maps to key 72, tile 4.
  auto wide = plan_for(20, 80, t, VisitOrder::diagonal_first);
  EXPECT_EQ(sequence(wide, 0), (Seq{2, 3, 1, 4, 0}));
  EXPECT_EQ(sequence(wide, 1), (Seq{4, 3, 2, 1, 0}));

  // Lq = 100 against Lk = 20 (key tiles 0..15, 16..19): query tile 6 (rows 96..99, centre 98)
  // maps to key 19, the partial tile 1; query tile 0 (centre 8) to key 1, tile 0.
  auto tall = plan_for(100, 20, t, VisitOrder::diagonal_first);
  EXPECT_EQ(sequence(tall, 0), (Seq{0, 1}));
  EXPECT_EQ(sequence(tall, 6), (Seq{1, 0}));
  EXPECT_EQ(sequence(tall, 3), (Seq{0, 1})) << "rows 48..63, centre 56 -> key 56 * 20 / 100 = 11, tile 0";

  // More tiles above than below, and below than above: j0 = 1 of 7; j0 = 5 of 7.
  auto seven = plan_for(112, 112, t, VisitOrder::diagonal_first);
  EXPECT_EQ(sequence(seven, 1), (Seq{1, 2, 0, 3, 4, 5, 6}));
  EXPECT_EQ(sequence(seven, 5), (Seq{5, 6, 4, 3, 2, 1, 0}));

  // The independent statement in the helpers agrees on every case above.
  for (i64 i = 0; i < 5; ++i) EXPECT_EQ(sequence(diag, i), visit_order(Order::diagonal, i, 80, 80, t));
  for (i64 i = 0; i < 2; ++i) EXPECT_EQ(sequence(wide, i), visit_order(Order::diagonal, i, 20, 80, t));
  for (i64 i = 0; i < 7; ++i) EXPECT_EQ(sequence(tall, i), visit_order(Order::diagonal, i, 100, 20, t));
  for (i64 i = 0; i < 7; ++i) EXPECT_EQ(sequence(seven, i), visit_order(Order::diagonal, i, 112, 112, t));
}

TEST(Orders, SequencesSkipTilesTheCallDoesNotVisit) {
  auto plan = plan_for(80, 80, {16, 16}, VisitOrder::diagonal_first);
  const std::uint32_t read = 0b10110;  // tiles 1, 2, 4
  EXPECT_EQ(sequence(plan, 2, 0, &read), (Seq{2, 1, 4}));
  plan.must_skip.count = 1;
  plan.must_skip.begin[0] = 4;
  plan.must_skip.end[0] = 5;
  plan.must_do.count = 1;
  plan.must_do.begin[0] = 0;
  plan.must_do.end[0] = 1;
  EXPECT_EQ(sequence(plan, 2, 0, &read), (Seq{2, 1, 0}));
}

TEST(Orders, OrderChangesWhatTheRunningCriterionSkips) {
  // Three query tiles and three key tiles of 16; every row sees key tiles at (-20, 0, -20).
  auto run = [](VisitOrder order, int calls) {
    Hand h(48, 48, {16, 16});
    h.set_logits(per_tile({-20, 0, -20}, 16));
    SkipState state;
    for (int c = 0; c < calls; ++c) liteattn::attention(h.args(-10.0f, Criterion::running, order), state);
    return std::vector<Tiles>{written(state, h, 0), written(state, h, 1), written(state, h, 2)};
  };
  // Descending: tile 2 first (kept), then 1, then 0 (skipped), for every query tile.
  EXPECT_EQ(run(VisitOrder::descending, 1), (std::vector<Tiles>{{1, 2}, {1, 2}, {1, 2}}));
  EXPECT_EQ(run(VisitOrder::descending, 2), (std::vector<Tiles>{{1, 2}, {1, 2}, {1, 2}}));
  // Alternate: the second call runs ascending over {1, 2}: 1 first, then 2 is skipped.
  EXPECT_EQ(run(VisitOrder::alternate, 1), (std::vector<Tiles>{{1, 2}, {1, 2}, {1, 2}}));
  EXPECT_EQ(run(VisitOrder::alternate, 2), (std::vector<Tiles>{{1}, {1}, {1}}));
  // Diagonal first: query tile 0 visits 0, 1, 2; tile 1 visits 1, 2, 0; tile 2 visits 2, 1, 0.
  EXPECT_EQ(run(VisitOrder::diagonal_first, 1), (std::vector<Tiles>{{0, 1}, {1}, {1, 2}}));
}

// --- section 3: the `previous` criterion ---------------------------------------------------

TEST(Criteria, PreviousComparesWithTheStoredRowMax) {
  auto trajectory = [](Criterion criterion, std::vector<float>* row_max) {
    Hand h(16, 48, {16, 16});
    h.set_logits([](i64 r, i64) { return 0.25f * float(r); });
    SkipState state;
    liteattn::attention(h.args(-10.0f, criterion), state);
    if (row_max) *row_max = state.row_max();
    h.set_logits(per_tile({-5, 0, -12}, 16));
    liteattn::attention(h.args(-10.0f, criterion), state);
    return written(state, h, 0);
  };
  std::vector<float> row_max;
  // running: tile 2 is visited first (kept); tile 0 is 5 below tile 1 (kept at -10).
  EXPECT_EQ(trajectory(Criterion::running, nullptr), (Tiles{0, 1, 2}));
  // previous: row r's stored max is 0.25 r; tile 2 (-12 - 0.25 r) falls below -10, tile 0
  // (-5 - 0.25 r) does not.
  EXPECT_EQ(trajectory(Criterion::previous, &row_max), (Tiles{0, 1}));
  ASSERT_EQ(row_max.size(), 16u);
  for (i64 r = 0; r < 16; ++r) EXPECT_EQ(row_max[r], 0.25f * float(r)) << "the stored max is the raw row max";
}

TEST(Criteria, PreviousFallsBackToRunningWithoutAStoredMax) {
  // First call: no stored max (NaN) -> running: tile 2 visited first is kept, tile 0 skipped.
  Hand h(32, 48, {16, 16});
  h.set_logits(per_tile({-50, 0, -50}, 16));
  SkipState state;
  auto args = h.args(-10.0f, Criterion::previous);
  state.prepare(liteattn::state_key(args));
  for (float m : state.row_max()) EXPECT_TRUE(std::isnan(m));
  liteattn::attention(args, state);
  EXPECT_EQ(written(state, h, 0), (Tiles{1, 2}));

  // Rows whose stored max is NaN fall back to running, the others use their stored max.
  Hand g(32, 48, {16, 16});
  g.set_logits([](i64, i64) { return 0.0f; });
  SkipState s2;
  liteattn::attention(g.args(-10.0f, Criterion::previous), s2);
  for (i64 r = 0; r < 16; ++r) s2.view().row_max[r] = kNaN;  // query tile 0: none stored
  g.set_logits(per_tile({-5, 0, -12}, 16));
  liteattn::attention(g.args(-10.0f, Criterion::previous), s2);
  EXPECT_EQ(written(s2, g, 0), (Tiles{0, 1, 2}));
  EXPECT_EQ(written(s2, g, 1), (Tiles{0, 1}));
  // One NaN row is enough to make the query tile keep its first tile (it votes as running).
  SkipState s3;
  g.set_logits([](i64, i64) { return 0.0f; });
  liteattn::attention(g.args(-10.0f, Criterion::previous), s3);
  s3.view().row_max[20] = kNaN;
  g.set_logits(per_tile({-5, 0, -12}, 16));
  liteattn::attention(g.args(-10.0f, Criterion::previous), s3);
  EXPECT_EQ(written(s3, g, 0), (Tiles{0, 1}));
  EXPECT_EQ(written(s3, g, 1), (Tiles{0, 1, 2}));
}

// --- section 3: NaN inputs -----------------------------------------------------------------

TEST(Rules, NaNInputsVoteKeepAndNeverRemoveTiles) {
  // Clean logits (0, -50, 0) per key tile: tile 1 is skipped by every query tile.
  auto make = [] {
    Hand h(32, 48, {16, 16});
    h.set_logits(per_tile({0, -50, 0}, 16));
    return h;
  };
  {  // NaN in one query row: that row votes keep everywhere, so its query tile keeps tile 1.
    Hand h = make();
    h.p.q.set(0, 3, 0, 3, kNaN);
    SkipState state;
    liteattn::attention(h.args(), state);
    EXPECT_EQ(written(state, h, 0), (Tiles{0, 1, 2}));
    EXPECT_EQ(written(state, h, 1), (Tiles{0, 2}));
    EXPECT_TRUE(std::isnan(h.p.out.get(0, 3, 0, 0))) << "NaN propagates to its row as in dense attention";
    const auto ref = h.reference();
    for (i64 r = 0; r < 32; ++r) {
      if (r == 3) continue;
      EXPECT_NEAR(h.lse.at(0, 0, r), ref.lse_at(0, 0, r), 1e-5) << "row " << r;
      for (i64 d = 0; d < h.p.D; ++d) EXPECT_NEAR(h.p.out.get(0, r, 0, d), ref.out_at(0, r, 0, d), 1e-5);
    }
  }
  {  // NaN in one key of tile 1: every row's max there is NaN, so tile 1 stays for everyone.
    Hand h = make();
    h.p.k.set(0, 20, 0, 5, kNaN);
    SkipState state;
    liteattn::attention(h.args(), state);
    EXPECT_EQ(written(state, h, 0), (Tiles{0, 1, 2}));
    EXPECT_EQ(written(state, h, 1), (Tiles{0, 1, 2}));
    // The next, clean call still visits tile 1 and decides afresh.
    h.p.k.set(0, 20, 0, 5, -50.0f);
    liteattn::attention(h.args(), state);
    EXPECT_EQ(state.stats().computed(), 6);
    EXPECT_EQ(written(state, h, 0), (Tiles{0, 2}));
    EXPECT_LE(h.out_error(h.reference()), 1e-6);
  }
  {  // NaN in v does not touch the votes.
    Hand h = make();
    h.p.v.set(0, 40, 0, 0, kNaN);
    SkipState state;
    liteattn::attention(h.args(), state);
    EXPECT_EQ(written(state, h, 0), (Tiles{0, 2}));
  }
  {  // A NaN row max stored by the `previous` criterion falls back to running next time.
    Hand h = make();
    h.set_logits([](i64, i64) { return 0.0f; });
    SkipState state;
    liteattn::attention(h.args(-10.0f, Criterion::previous), state);
    h.p.q.set(0, 3, 0, 3, kNaN);
    liteattn::attention(h.args(-10.0f, Criterion::previous), state);
    EXPECT_TRUE(std::isnan(state.row_max()[3]));
    h.p.q.set(0, 3, 0, 3, 1.0f);
    h.set_logits(per_tile({-5, 0, -12}, 16));
    liteattn::attention(h.args(-10.0f, Criterion::previous), state);
    EXPECT_EQ(written(state, h, 0), (Tiles{0, 1, 2})) << "row 3 votes with the running max: first tile kept";
    EXPECT_EQ(written(state, h, 1), (Tiles{0, 1}));
  }
}

TEST(Rules, InfiniteThresholdKeepsEverythingAndZeroThresholdKeepsOnlyNewMaxima) {
  Hand h(16, 48, {16, 16});
  h.set_logits(per_tile({-1000, -3, 0}, 16));
  SkipState a, b;
  liteattn::attention(h.args(-std::numeric_limits<float>::infinity()), a);
  EXPECT_EQ(written(a, h, 0), (Tiles{0, 1, 2}));
  // Threshold 0: a tile is kept only when some row's max exceeds the running max (2 first).
  h.set_logits(per_tile({1, -3, 0}, 16));
  liteattn::attention(h.args(0.0f), b);
  EXPECT_EQ(written(b, h, 0), (Tiles{0, 2}));
  // Keep means strictly above the threshold: at 0, a tile that only equals the running max goes.
  SkipState c;
  h.set_logits(per_tile({0, 0, 0}, 16));
  liteattn::attention(h.args(0.0f), c);
  EXPECT_EQ(written(c, h, 0), (Tiles{2}));
}

}  // namespace
