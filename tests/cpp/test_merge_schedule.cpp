// LSE merge of partial results (method.md section 7) and the ThresholdSchedule (section 5).
#include <gtest/gtest.h>

#include <unistd.h>

#include <bit>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "reference_helpers.hpp"

namespace {

using namespace lt;
using liteattn::ArgumentError;
using liteattn::TensorView;
using liteattn::ThresholdSchedule;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// k and v restricted to key positions [begin, end).
liteattn::AttentionArgs key_slice(const Problem& p, i64 begin, i64 end, const HostTensor& out, const LseTensor& lse) {
  auto a = p.args();
  for (TensorView* t : {&a.k, &a.v}) {
    t->data = static_cast<std::uint8_t*>(t->data) + begin * t->stride[1] * i64(liteattn::dtype_size(t->dtype));
    t->shape[1] = end - begin;
  }
  a.out = out.view();
  a.lse = lse.view();
  a.cpu_tile = TileShape{16, 16};
  return a;
}

std::string argument_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const ArgumentError& e) {
    return e.argument();
  }
  return "<no exception>";
}

TEST(Merge, SplitOverKeysEqualsTheUnion) {
  Problem p(2, 33, 77, 2, 1, 16);
  p.randomize(9, 1.5f, 1.5f);
  auto full = p.args();
  full.cpu_tile = TileShape{16, 16};
  liteattn::attention(full);
  const auto ref = reference_attention(p, default_scale(16), {16, 16});
  ASSERT_LE(rel_l2_out(p.out, ref), 1e-6);

  // Two shards split inside a tile (40), and three shards.
  for (const std::vector<i64>& cuts : {std::vector<i64>{0, 40, 77}, std::vector<i64>{0, 1, 50, 77}}) {
    std::vector<HostTensor> outs;
    std::vector<LseTensor> lses;
    for (std::size_t s = 0; s + 1 < cuts.size(); ++s) {
      outs.emplace_back(DType::f32, std::array<i64, 4>{2, 33, 2, 16});
      lses.emplace_back(2, 2, 33);
    }
    std::vector<TensorView> out_views, lse_views;
    for (std::size_t s = 0; s + 1 < cuts.size(); ++s) {
      liteattn::attention(key_slice(p, cuts[s], cuts[s + 1], outs[s], lses[s]));
      out_views.push_back(outs[s].view());
      lse_views.push_back(lses[s].view());
    }
    HostTensor merged(DType::f32, {2, 33, 2, 16}, 3);  // a strided output
    LseTensor merged_lse(2, 2, 33);
    liteattn::merge_attention(out_views, lse_views, merged.view(), merged_lse.view());
    EXPECT_LE(rel_l2_out(merged, ref), 1e-6) << cuts.size() - 1 << " shards";
    EXPECT_LE(rel_l2_lse(merged_lse, ref), 1e-6) << cuts.size() - 1 << " shards";
    // And against the library's own single call.
    double worst = 0;
    for (std::size_t n = 0; n < p.lse.data.size(); ++n) worst = std::max(worst, double(std::fabs(p.lse.data[n] - merged_lse.data[n])));
    EXPECT_LE(worst, 1e-5);

    // Merging into bf16 rounds once at the end.
    HostTensor merged16(DType::bf16, {2, 33, 2, 16});
    liteattn::merge_attention(out_views, lse_views, merged16.view());
    EXPECT_LE(rel_l2_out(merged16, ref), 4e-3);
  }
}

TEST(Merge, EmptyPartsDropOut) {
  // A shard whose keys are all skipped (must_skip) has out 0 and lse -inf: merging it changes
  // nothing; merging only empty parts gives out 0 and lse -inf.
  Problem p(1, 20, 48, 2, 2, 16);
  p.randomize(10);
  const auto ref = reference_attention(p, default_scale(16), {16, 16});
  HostTensor out_a(DType::f32, {1, 20, 2, 16}), out_b(DType::f32, {1, 20, 2, 16});
  LseTensor lse_a(1, 2, 20), lse_b(1, 2, 20);
  liteattn::attention(key_slice(p, 0, 48, out_a, lse_a));
  auto empty = key_slice(p, 0, 48, out_b, lse_b);
  empty.must_skip = {{0, 48}};
  liteattn::attention(empty);
  for (float l : lse_b.data) ASSERT_EQ(l, kNegInf);

  HostTensor merged(DType::f32, {1, 20, 2, 16});
  LseTensor merged_lse(1, 2, 20);
  liteattn::merge_attention({out_b.view(), out_a.view(), out_b.view()}, {lse_b.view(), lse_a.view(), lse_b.view()}, merged.view(),
                            merged_lse.view());
  EXPECT_LE(rel_l2_out(merged, ref), 1e-6);
  EXPECT_LE(rel_l2_lse(merged_lse, ref), 1e-6);

  merged.fill(3.0f);
  liteattn::merge_attention({out_b.view(), out_b.view()}, {lse_b.view(), lse_b.view()}, merged.view(), merged_lse.view());
  for (float l : merged_lse.data) ASSERT_EQ(l, kNegInf);
  for (i64 l = 0; l < 20; ++l)
    for (i64 h = 0; h < 2; ++h)
      for (i64 d = 0; d < 16; ++d) ASSERT_EQ(merged.get(0, l, h, d), 0.0f);
}

TEST(Merge, BadArgumentsAreNamed) {
  HostTensor a(DType::f32, {1, 4, 2, 8}), b(DType::f32, {1, 4, 2, 8}), wrong(DType::f32, {1, 5, 2, 8}), out(DType::f32, {1, 4, 2, 8});
  LseTensor la(1, 2, 4), lb(1, 2, 4), lwrong(1, 2, 5);
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({}, {}, out.view()); }), "outs");
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view(), b.view()}, {la.view()}, out.view()); }), "lses");
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view(), wrong.view()}, {la.view(), lb.view()}, out.view()); }), "outs[1]");
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view(), b.view()}, {lwrong.view(), lb.view()}, out.view()); }), "lses[0]");
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view()}, {la.view()}, out.view(), lwrong.view()); }), "lse");
  auto strided = out.view();
  strided.stride[3] = 2;
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view()}, {la.view()}, strided); }), "out");
  auto on_gpu = a.view();
  on_gpu.device = {liteattn::DeviceKind::cuda, 0};
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({on_gpu}, {la.view()}, out.view()); }), "outs[0]");
  auto la_on_gpu = la.view(), lb_on_gpu = lb.view();
  la_on_gpu.device = lb_on_gpu.device = {liteattn::DeviceKind::cuda, 0};
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view(), b.view()}, {la.view(), lb_on_gpu}, out.view()); }), "lses[1]");
  const auto out_before = out.bytes();
  const auto lse_before = lb.data;
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view()}, {la.view()}, out.view(), lb_on_gpu); }), "lse");
  auto out_on_gpu = out.view();
  out_on_gpu.device = {liteattn::DeviceKind::cuda, 0};
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view()}, {la.view()}, out_on_gpu); }), "out");
  // Missing tensors and impossible shapes are named too (before anything reads through them).
  liteattn::TensorView none;
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view()}, {la.view()}, none); }), "out");
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({none}, {la.view()}, out.view()); }), "outs[0]");
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view()}, {none}, out.view()); }), "lses[0]");
  auto negative = out.view();
  negative.shape[1] = -4;
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view()}, {la.view()}, negative); }), "out");
  auto broadcast = out.view();
  broadcast.stride[1] = 0;
  EXPECT_EQ(argument_of([&] { liteattn::merge_attention({a.view()}, {la.view()}, broadcast); }), "out");
  EXPECT_EQ(out.bytes(), out_before) << "a rejected merge writes nothing";
  EXPECT_EQ(lb.data, lse_before);
}

// --- ThresholdSchedule ---------------------------------------------------------------------

TEST(Schedule, StepsWarmupAndApply) {
  const auto s = ThresholdSchedule::per_step({-20.0f, -12.5f, -8.0f}, 1);
  EXPECT_EQ(s.threshold(0), -20.0f);
  EXPECT_EQ(s.threshold(2), -8.0f);
  EXPECT_EQ(s.threshold(50), -8.0f) << "steps past the end reuse the last threshold";
  EXPECT_TRUE(s.is_warmup(0));
  EXPECT_FALSE(s.is_warmup(1));
  liteattn::SkipOptions skip;
  s.apply(0, skip);
  EXPECT_FALSE(skip.enabled);
  s.apply(1, skip);
  EXPECT_TRUE(skip.enabled);
  EXPECT_EQ(skip.threshold, -12.5f);
  const auto c = ThresholdSchedule::constant(-6.0f);
  EXPECT_EQ(c.warmup_steps(), 0);
  EXPECT_EQ(c.threshold(0), -6.0f);
  EXPECT_EQ(c.threshold(99), -6.0f);
  EXPECT_EQ(argument_of([&] { (void)c.threshold(-1); }), "step");
}

void expect_same(const ThresholdSchedule& a, const ThresholdSchedule& b) {
  EXPECT_EQ(a.warmup_steps(), b.warmup_steps());
  ASSERT_EQ(a.thresholds().size(), b.thresholds().size());
  for (std::size_t i = 0; i < a.thresholds().size(); ++i)
    EXPECT_EQ(std::bit_cast<std::uint32_t>(a.thresholds()[i]), std::bit_cast<std::uint32_t>(b.thresholds()[i])) << i;
}

TEST(Schedule, JsonRoundTrip) {
  // Values that need all nine significant digits, zero, and -inf (dense but with bookkeeping).
  const auto s = ThresholdSchedule::per_step({-0.1f, -10.0f, -3.14159274f, 0.0f, kNegInf, -1e-7f, -123456.789f}, 3);
  expect_same(ThresholdSchedule::from_json(s.to_json()), s);
  const auto path = (std::filesystem::temp_directory_path() / ("liteattn_schedule_" + std::to_string(::getpid()) + ".json")).string();
  s.save(path);
  expect_same(ThresholdSchedule::load(path), s);
  std::filesystem::remove(path);
  // Hand-written JSON: whitespace, key order, unknown keys are skipped.
  const auto h = ThresholdSchedule::from_json(
      " { \"note\": \"calibrated\", \"meta\": {\"a\": [1, 2]}, \"thresholds\" : [ -4 , -2.5e0 ], \"warmup_steps\": 2 } ");
  expect_same(h, ThresholdSchedule::per_step({-4.0f, -2.5f}, 2));
  expect_same(ThresholdSchedule::from_json("{\"thresholds\": [-1]}"), ThresholdSchedule::constant(-1.0f));
  // -inf is written as -1e999 (standard JSON); Python's -Infinity is read too.
  EXPECT_EQ(ThresholdSchedule::per_step({kNegInf}).to_json().find("Infinity"), std::string::npos);
  expect_same(ThresholdSchedule::from_json("{\"thresholds\": [-Infinity, -1e999]}"), ThresholdSchedule::per_step({kNegInf, kNegInf}));
}

TEST(Schedule, JsonReadsWhatPythonReads) {
  // Other members of any JSON type (strings holding brackets and escapes, literals, nested
  // values), escaped keys decoded, and a repeated member's last value, as Python's json does.
  const auto a = ThresholdSchedule::from_json(
      "{\"note\": null, \"ok\": true, \"no\": false, \"meta\": [\"]\", \"}\", {\"x\": [[]]}], \"s\": \"a\\\"b\\\\\",\n"
      " \"warmup\\u005fsteps\": 1, \"thresholds\": [-9], \"thresholds\": [-3, -2]}");
  expect_same(a, ThresholdSchedule::per_step({-3.0f, -2.0f}, 1));
  // An integral warm-up written as a float; thresholds beyond float's range become -inf.
  expect_same(ThresholdSchedule::from_json("{\"warmup_steps\": 2.0, \"thresholds\": [-1e300]}"),
              ThresholdSchedule::per_step({kNegInf}, 2));
}

TEST(Schedule, Errors) {
  EXPECT_EQ(argument_of([] { ThresholdSchedule::per_step({}); }), "thresholds");
  EXPECT_EQ(argument_of([] { ThresholdSchedule::per_step({-1.0f, 0.5f}); }), "thresholds");
  EXPECT_EQ(argument_of([] { ThresholdSchedule::constant(std::numeric_limits<float>::quiet_NaN()); }), "thresholds");
  EXPECT_EQ(argument_of([] { ThresholdSchedule::constant(-1.0f, -1); }), "warmup_steps");
  EXPECT_EQ(argument_of([] { ThresholdSchedule::from_json("{\"thresholds\": [1.5]}"); }), "thresholds");
  EXPECT_EQ(argument_of([] { ThresholdSchedule::from_json("{\"thresholds\": []}"); }), "thresholds");
  EXPECT_EQ(argument_of([] { ThresholdSchedule::from_json("{\"warmup_steps\": -2, \"thresholds\": [-1]}"); }), "warmup_steps");
  for (const char* warmup : {"2.7", "1e10", "NaN", "Infinity", "-0.5"})
    EXPECT_EQ(argument_of([&] {
                ThresholdSchedule::from_json(std::string("{\"warmup_steps\": ") + warmup + ", \"thresholds\": [-1]}");
              }),
              "warmup_steps")
        << warmup;
  EXPECT_EQ(argument_of([] { ThresholdSchedule::from_json("{\"thresholds\": [NaN]}"); }), "thresholds");
  for (const char* bad : {"", "[]", "{", "{\"warmup_steps\": 1}", "{\"thresholds\": [-1, ]}", "{\"thresholds\": [-1]",
                          "{\"thresholds\" [-1]}", "{\"thresholds\": [-1] \"warmup_steps\": 1}", "{\"thresholds\": [x]}",
                          "{\"thresholds: [-1]}", "{\"thresholds\": [-1]} x", "{\"thresholds\": [-1]}}",
                          "{\"thresholds\": [0x1p3]}", "{\"thresholds\": [-.5]}", "{\"thresholds\": [-01]}",
                          "{\"thresholds\": [-1], \"a\": tru}", "{\"thresholds\": [-1], \"a\": \"\\q\"}",
                          "{\"thresholds\": [-1], \"a\": [1 2]}", "{\"thresholds\": [-1], \"a\": \"\t\"}"})
    EXPECT_EQ(argument_of([&] { ThresholdSchedule::from_json(bad); }), "schedule") << bad;
  // Nesting is bounded (no recursion without limit on hostile input).
  const std::string deep = "{\"thresholds\": [-1], \"a\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(argument_of([&] { ThresholdSchedule::from_json(deep); }), "schedule");
  EXPECT_EQ(argument_of([] { ThresholdSchedule::load("/nonexistent/dir/schedule.json"); }), "schedule");
  EXPECT_EQ(argument_of([] { ThresholdSchedule::constant(-1.0f).save("/nonexistent/dir/schedule.json"); }), "schedule");
}

}  // namespace
