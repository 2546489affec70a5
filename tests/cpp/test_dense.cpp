// The CPU reference against an independent fp64 attention: dense (skipping disabled, threshold
// -inf), GQA, random shapes under the same read mask with the written mask recomputed in fp64,
// and determinism.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <sstream>

#include "reference_helpers.hpp"

namespace {

using namespace lt;
using liteattn::AttentionArgs;
using liteattn::Criterion;
using liteattn::SkipState;
using liteattn::VisitOrder;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct DenseCase {
  i64 B, Lq, Lk, H, Hkv, D;
  TileShape tile;
  i64 pad;
};

std::string name(const DenseCase& c) {
  std::ostringstream s;
  s << "B" << c.B << "_Lq" << c.Lq << "_Lk" << c.Lk << "_H" << c.H << "_Hkv" << c.Hkv << "_D" << c.D << "_t" << c.tile.m
    << "x" << c.tile.n << "_pad" << c.pad;
  return s.str();
}

// Short parameter names in test listings (gtest would print the raw bytes otherwise).
void PrintTo(const DenseCase& c, std::ostream* os) { *os << name(c); }

class Dense : public ::testing::TestWithParam<DenseCase> {};

// Skipping disabled: plain dense attention, rel L2 <= 1e-6 against fp64 with fp32 inputs.
TEST_P(Dense, SkippingDisabledEqualsFp64) {
  const auto& c = GetParam();
  Problem p(c.B, c.Lq, c.Lk, c.H, c.Hkv, c.D, DType::f32, c.pad);
  p.randomize(11 + c.Lq * 7 + c.Lk);
  auto args = p.args();
  args.cpu_tile = c.tile;
  liteattn::attention(args);
  const auto ref = reference_attention(p, default_scale(c.D), c.tile);
  EXPECT_LE(rel_l2_out(p.out, ref), 1e-6) << name(c);
  EXPECT_LE(rel_l2_lse(p.lse, ref), 1e-6) << name(c);
}

// Threshold -inf with skipping enabled: every call of a trajectory is dense, the mask stays full.
TEST_P(Dense, ThresholdMinusInfEqualsFp64) {
  const auto& c = GetParam();
  Problem p(c.B, c.Lq, c.Lk, c.H, c.Hkv, c.D, DType::f32, c.pad);
  SkipState state;
  for (int call = 0; call < 3; ++call) {
    p.randomize(100 + call, 2.0f, 2.0f);  // large logit spread: would skip at any finite threshold
    auto args = p.args();
    args.cpu_tile = c.tile;
    args.skip.enabled = true;
    args.skip.threshold = kNegInf;
    args.skip.order = call == 1 ? VisitOrder::alternate : VisitOrder::descending;
    liteattn::attention(args, state);
    const auto ref = reference_attention(p, default_scale(c.D), c.tile);
    EXPECT_LE(rel_l2_out(p.out, ref), 1e-6) << name(c) << " call " << call;
    EXPECT_LE(rel_l2_lse(p.lse, ref), 1e-6) << name(c) << " call " << call;
    EXPECT_EQ(state.stats().next_sparsity(), 0.0);
    EXPECT_EQ(state.stats().last_sparsity(), 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Dense,
                         ::testing::Values(DenseCase{1, 1, 1, 1, 1, 8, {16, 16}, 0},
                                           DenseCase{1, 7, 7, 2, 2, 16, {16, 16}, 0},
                                           DenseCase{2, 33, 129, 2, 1, 24, {16, 32}, 3},
                                           DenseCase{1, 129, 65, 4, 2, 32, {32, 64}, 0},
                                           DenseCase{1, 50, 300, 1, 1, 64, {128, 128}, 5},
                                           DenseCase{1, 20, 17, 3, 3, 40, {7, 5}, 1},
                                           DenseCase{1, 9, 40, 2, 1, 8, {1, 1}, 0},
                                           DenseCase{1, 70, 33, 1, 1, 8, {4096, 4096}, 0}),
                         [](const auto& info) { return name(info.param); });

// GQA: H=4 query heads over Hkv=2 key/value heads equals the same call with k and v expanded to
// 4 heads (bit for bit: the same arithmetic), with skipping on, over a trajectory.
TEST(Gqa, EqualsExpandedKeysAndValues) {
  const i64 B = 2, Lq = 45, Lk = 70, H = 4, Hkv = 2, D = 16;
  const TileShape tile{16, 16};
  Problem gqa(B, Lq, Lk, H, Hkv, D), mha(B, Lq, Lk, H, H, D);
  SkipState s_gqa, s_mha;
  for (int call = 0; call < 3; ++call) {
    gqa.randomize(7 + call);
    gqa.add_locality(4.0 / 256.0);
    for (i64 b = 0; b < B; ++b)
      for (i64 h = 0; h < H; ++h)
        for (i64 d = 0; d < D; ++d) {
          for (i64 l = 0; l < Lq; ++l) mha.q.set(b, l, h, d, gqa.q.get(b, l, h, d));
          for (i64 l = 0; l < Lk; ++l) {
            mha.k.set(b, l, h, d, gqa.k.get(b, l, h / (H / Hkv), d));
            mha.v.set(b, l, h, d, gqa.v.get(b, l, h / (H / Hkv), d));
          }
        }
    for (auto* p : {&gqa, &mha}) {
      auto args = p->args();
      args.cpu_tile = tile;
      args.skip.enabled = true;
      args.skip.threshold = -2.0f;
      liteattn::attention(args, p == &gqa ? s_gqa : s_mha);
    }
    EXPECT_EQ(gqa.out.bytes(), mha.out.bytes()) << "call " << call;
    EXPECT_EQ(gqa.lse.data, mha.lse.data) << "call " << call;
    EXPECT_EQ(s_gqa.read_mask(), s_mha.read_mask()) << "call " << call;
    // And against fp64 with the kv head h / 2.
    const auto ref = reference_attention(gqa, default_scale(D), tile,
                                         [&](i64 b, i64 h, i64 i, i64 j) {
                                           const MaskGeometry g(B, H, Lq, Lk, tile);
                                           return bit(s_gqa.last_read_mask(), g, b, h, i, j);
                                         });
    EXPECT_LE(rel_l2_out(gqa.out, ref), 1e-5);
  }
  EXPECT_GT(s_gqa.stats().next_sparsity(), 0.0) << "the case should skip something";
}

// --- property tests on random shapes -----------------------------------------------------

struct PropertyCase {
  i64 B, Lq, Lk, H, Hkv, D;
  TileShape tile;
  DType dtype;
  VisitOrder order;
  Criterion criterion;
  float threshold;
  i64 pad;
  bool ranges;  // add must_do / must_skip / dense_queries
};

std::string name(const PropertyCase& c) {
  std::ostringstream s;
  s << "Lq" << c.Lq << "_Lk" << c.Lk << "_H" << c.H << "_Hkv" << c.Hkv << "_D" << c.D << "_t" << c.tile.m << "x" << c.tile.n
    << "_" << liteattn::to_string(c.dtype) << "_" << liteattn::to_string(c.order) << "_" << liteattn::to_string(c.criterion)
    << "_thr" << int(-c.threshold) << (c.ranges ? "_ranges" : "");
  return s.str();
}

void PrintTo(const PropertyCase& c, std::ostream* os) { *os << name(c); }

class Property : public ::testing::TestWithParam<PropertyCase> {};

double out_tolerance(DType dtype) {
  switch (dtype) {
    // fp32: the locality dims carry large opposite terms (2a x.y and -a|y|^2, hundreds of nats)
    // whose fp32 dot product loses ~1e-4 absolute in the logits; 1e-6 holds for plain random
    // inputs (Dense.* above).
    case DType::f32: return 5e-5;
    case DType::bf16: return 8e-3;  // output rounding to bf16: 2^-9 relative per element
    case DType::f16: return 1e-3;   // 2^-12 relative per element
  }
  return 0;
}

// A trajectory of calls on slowly changing random inputs. At every call:
//  - the output and lse equal fp64 attention over exactly the tiles the read mask (with
//    must_do / must_skip / dense queries) lets the call visit, as computed here independently;
//  - the written mask equals an fp64 recomputation of the vote rule, except where the decision
//    margin is below 1e-3 (method.md section 8);
//  - the written mask is a subset of the read mask and has no bits past nk.
TEST_P(Property, MatchesFp64UnderTheSameReadMask) {
  const auto& c = GetParam();
  Problem p(c.B, c.Lq, c.Lk, c.H, c.Hkv, c.D, c.dtype, c.pad);
  const MaskGeometry g(c.B, c.H, c.Lq, c.Lk, c.tile);
  const double scale = default_scale(c.D);
  Problem base(c.B, c.Lq, c.Lk, c.H, c.Hkv, c.D, DType::f32);
  base.randomize(c.Lq * 31 + c.Lk * 17 + c.D);
  base.add_locality(4.0 / double(c.tile.n * c.tile.n));
  Problem noise(c.B, c.Lq, c.Lk, c.H, c.Hkv, c.D, DType::f32);
  noise.randomize(5, 1.0f, 1.0f);

  std::vector<liteattn::TokenRange> must_do, must_skip, dense_queries;
  if (c.ranges) {
    if (c.Lk > 2) must_do = {{0, 1}, {c.Lk / 2, c.Lk / 2 + 1}};
    if (c.Lk > 8) must_skip = {{c.Lk - c.Lk / 4, c.Lk}};
    if (c.Lq > 3) dense_queries = {{c.Lq / 3, c.Lq / 3 + 1}};
  }

  SkipState state;
  i64 total_skipped = 0;
  for (int call = 0; call < 4; ++call) {
    // Inputs = base + shrinking noise, as along a denoising trajectory.
    const float w = 0.5f / float(call + 1);
    for (auto [dst, a, n] : {std::tuple{&p.q, &base.q, &noise.q}, std::tuple{&p.k, &base.k, &noise.k},
                             std::tuple{&p.v, &base.v, &noise.v}}) {
      const auto& s = dst->shape();
      for (i64 b = 0; b < s[0]; ++b)
        for (i64 l = 0; l < s[1]; ++l)
          for (i64 h = 0; h < s[2]; ++h)
            for (i64 d = 0; d < s[3]; ++d) dst->set(b, l, h, d, a->get(b, l, h, d) + w * n->get(b, l, h, d));
    }
    auto args = p.args();
    args.cpu_tile = c.tile;
    args.skip.enabled = true;
    args.skip.threshold = c.threshold;
    args.skip.order = c.order;
    args.skip.criterion = c.criterion;
    args.must_do = must_do;
    args.must_skip = must_skip;
    args.dense_queries = dense_queries;
    args.cpu_threads = 2;
    state.prepare(liteattn::state_key(args));  // no-op after the first call: the key does not change

    VoteCall vc;
    vc.tile = c.tile;
    vc.scale = scale;
    vc.threshold = c.threshold;
    vc.previous = c.criterion == Criterion::previous;
    vc.order = c.order == VisitOrder::diagonal_first ? Order::diagonal
               : (c.order == VisitOrder::alternate && call % 2 == 1) ? Order::ascending
                                                                      : Order::descending;
    vc.read_mask = state.read_mask();
    vc.stored_row_max = state.row_max();
    vc.must_do = must_do;
    vc.must_skip = must_skip;
    vc.dense_queries = dense_queries;
    const VoteResult votes = expected_votes(p, vc);

    liteattn::attention(args, state);

    const auto ref = reference_attention(p, scale, c.tile, visited_tiles(votes, g));
    EXPECT_LE(rel_l2_out(p.out, ref), out_tolerance(c.dtype)) << name(c) << " call " << call;
    EXPECT_LE(rel_l2_lse(p.lse, ref), 1e-5) << name(c) << " call " << call;

    const auto written = state.read_mask();
    EXPECT_EQ(certain_mismatches(written, votes, g), 0) << name(c) << " call " << call;
    for (std::size_t n = 0; n < written.size(); ++n) EXPECT_EQ(written[n] & ~vc.read_mask[n], 0u) << "word " << n;
    for (i64 row = 0; row < g.B * g.H * g.nq; ++row)
      for (i64 j = g.nk; j < g.words * 32; ++j) EXPECT_FALSE((written[row * g.words + j / 32] >> (j % 32)) & 1u);

    // Statistics: tiles computed per head = tiles this call visited.
    const auto stats = state.stats();
    for (i64 h = 0; h < c.H; ++h) {
      i64 visited = 0;
      for (i64 b = 0; b < c.B; ++b)
        for (i64 i = 0; i < g.nq; ++i)
          for (i64 j = 0; j < g.nk; ++j) visited += votes.visited[g.row(b, h, i) * g.nk + j];
      EXPECT_EQ(stats.computed_per_head[h], visited) << "head " << h;
    }
    EXPECT_EQ(stats.calls, call + 1);
    total_skipped += g.B * g.H * g.nq * g.nk - popcount(written);
  }
  if (g.nq > 1 && g.nk > 1 && c.threshold > -8) { EXPECT_GT(total_skipped, 0) << "expected some skipping in " << name(c); }
}

std::vector<PropertyCase> property_cases() {
  using C = Criterion;
  using O = VisitOrder;
  return {
      {1, 1, 1, 1, 1, 16, {16, 16}, DType::f32, O::descending, C::running, -2, 0, false},
      {1, 7, 300, 2, 1, 32, {16, 16}, DType::f32, O::descending, C::running, -2, 0, false},
      {1, 300, 7, 2, 2, 16, {16, 16}, DType::bf16, O::alternate, C::previous, -3, 2, false},
      {2, 129, 129, 2, 2, 32, {32, 64}, DType::f16, O::diagonal_first, C::running, -2, 0, true},
      {1, 129, 300, 2, 1, 16, {16, 16}, DType::f32, O::alternate, C::running, -3, 0, true},
      {1, 300, 129, 1, 1, 32, {32, 64}, DType::bf16, O::descending, C::previous, -1, 0, true},
      {1, 300, 300, 1, 1, 16, {64, 32}, DType::f16, O::diagonal_first, C::previous, -2, 1, false},
      {1, 129, 7, 4, 2, 16, {7, 3}, DType::f32, O::diagonal_first, C::running, -1, 0, false},
      {1, 7, 129, 1, 1, 64, {16, 16}, DType::f16, O::alternate, C::previous, -2, 0, true},
      {1, 200, 300, 2, 2, 16, {32, 16}, DType::f32, O::descending, C::running, -10, 0, true},
      {1, 9, 70, 2, 1, 16, {1, 1}, DType::f32, O::alternate, C::previous, -3, 0, true},
      {2, 45, 37, 2, 2, 8, {5, 4}, DType::bf16, O::diagonal_first, C::running, -4, 3, true},
  };
}

INSTANTIATE_TEST_SUITE_P(RandomShapes, Property, ::testing::ValuesIn(property_cases()),
                         [](const auto& info) { return name(info.param); });

// --- determinism ---------------------------------------------------------------------------

struct Snapshot {
  std::vector<std::uint8_t> out;
  std::vector<float> lse;
  std::vector<std::uint32_t> mask;
  std::vector<float> row_max;
};

Snapshot run_trajectory(int threads) {
  Problem p(2, 97, 131, 2, 1, 32, DType::bf16);
  SkipState state;
  Snapshot s;
  for (int call = 0; call < 3; ++call) {
    p.randomize(40 + call, 2.0f, 2.0f);
    auto args = p.args();
    args.cpu_tile = TileShape{16, 32};
    args.skip.enabled = true;
    args.skip.threshold = -3.0f;
    args.skip.criterion = Criterion::previous;
    args.skip.order = VisitOrder::alternate;
    args.cpu_threads = threads;
    liteattn::attention(args, state);
  }
  s.out = p.out.bytes();
  s.lse = p.lse.data;
  s.mask = state.read_mask();
  s.row_max = state.row_max();
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Determinism, SameInputsGiveSameBitsForAnyThreadCount) {
  const Snapshot a = run_trajectory(1), b = run_trajectory(1), c = run_trajectory(2);
  EXPECT_EQ(a.out, b.out);
  EXPECT_TRUE(same_bits(a.lse, b.lse));
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_TRUE(same_bits(a.row_max, b.row_max));
  EXPECT_EQ(a.out, c.out);
  EXPECT_TRUE(same_bits(a.lse, c.lse));
  EXPECT_EQ(a.mask, c.mask);
  EXPECT_TRUE(same_bits(a.row_max, c.row_max));
}

}  // namespace
