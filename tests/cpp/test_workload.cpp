// The synthetic video workload (include/liteattn/workload.hpp): deterministic by seed, built as documented, and
// keeping its character along a trajectory with the paper's criterion.
#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <numbers>

#include "reference_helpers.hpp"

namespace {

using namespace lt;
using liteattn::SkipState;
using liteattn::VideoWorkload;
using liteattn::WorkloadConfig;

WorkloadConfig small_config(std::uint64_t seed = 0) {
  WorkloadConfig c;
  c.frames = 2;
  c.height = 3;
  c.width = 5;
  c.heads = 3;
  c.head_dim = 32;
  c.steps = 10;
  c.seed = seed;
  return c;
}

struct Tensors {
  std::vector<float> q, k, v;
  explicit Tensors(const WorkloadConfig& c)
      : q(std::size_t(c.tokens() * c.heads * c.head_dim)), k(q.size()), v(q.size()) {}
};

Tensors generate(const VideoWorkload& w, int step) {
  Tensors t(w.config());
  w.generate(step, t.q.data(), t.k.data(), t.v.data());
  return t;
}

TEST(Workload, DeterministicBySeed) {
  const VideoWorkload a(small_config(0)), b(small_config(0)), c(small_config(1));
  const auto a3 = generate(a, 3), b3 = generate(b, 3), c3 = generate(c, 3), a4 = generate(a, 4);
  EXPECT_EQ(a3.q, b3.q);
  EXPECT_EQ(a3.k, b3.k);
  EXPECT_EQ(a3.v, b3.v);
  EXPECT_NE(a3.q, c3.q);
  EXPECT_NE(a3.k, c3.k);
  EXPECT_NE(a3.v, c3.v);
  EXPECT_NE(a3.q, a4.q) << "steps differ";
  EXPECT_EQ(a3.v, a4.v) << "values are fixed per token";
  // Generating another step in between does not change a step's tensors.
  (void)generate(a, 7);
  EXPECT_EQ(generate(a, 3).q, a3.q);
}

TEST(Workload, ScheduleAndLocality) {
  const VideoWorkload w(small_config());
  EXPECT_FLOAT_EQ(w.sigma(0), 1.0f);
  for (int s = 1; s < w.config().steps; ++s) {
    EXPECT_LT(w.sigma(s), w.sigma(s - 1));
    EXPECT_GT(w.sigma(s), 0.0f);
  }
  // Shifted flow matching: sigma = shift t / (1 + (shift - 1) t), t = 1 - step / steps.
  const float t = 1.0f - 4.0f / 10.0f;
  EXPECT_NEAR(w.sigma(4), 5.0f * t / (1.0f + 4.0f * t), 1e-6);
  EXPECT_NEAR(w.locality(0), 0.5f, 1e-6);
  EXPECT_NEAR(w.locality(2), 0.02f, 1e-6);
  EXPECT_GT(w.locality(1), w.locality(2));
  EXPECT_LT(w.locality(1), w.locality(0));
}

TEST(Workload, DistancePartGivesExactSquaredDistanceLogits) {
  // Dims 0..3 carry the distance decay: scaled q.k over them = -a |x - y|^2 + a |x|^2, with
  // positions centred and a frame step weighing 1.5 pixels.
  const auto cfg = small_config();
  const VideoWorkload w(cfg);
  const auto t = generate(w, 5);
  const int H = cfg.heads, D = cfg.head_dim;
  auto position = [&](i64 token, double* p) {
    const i64 f = token / (cfg.height * cfg.width), r = token / cfg.width % cfg.height, c = token % cfg.width;
    p[0] = (double(f) - 0.5 * (cfg.frames - 1)) * 1.5;
    p[1] = double(r) - 0.5 * (cfg.height - 1);
    p[2] = double(c) - 0.5 * (cfg.width - 1);
  };
  for (int h : {0, H - 1})
    for (i64 x : {i64(0), i64(7), cfg.tokens() - 1})
      for (i64 y : {i64(0), i64(3), i64(12), cfg.tokens() - 1}) {
        double px[3], py[3];
        position(x, px);
        position(y, py);
        double dist2 = 0, norm2 = 0;
        for (int i = 0; i < 3; ++i) dist2 += (px[i] - py[i]) * (px[i] - py[i]), norm2 += px[i] * px[i];
        double dot = 0;
        for (int d = 0; d < 4; ++d) dot += double(t.q[(x * H + h) * D + d]) * double(t.k[(y * H + h) * D + d]);
        const double a = w.locality(h);
        EXPECT_NEAR(dot / std::sqrt(double(D)), -a * dist2 + a * norm2, 1e-4 * (1 + a * (dist2 + norm2)));
      }
}

TEST(Workload, PresetsAndBadConfigs) {
  const auto d = liteattn::workload_preset("default");
  EXPECT_EQ(d.tokens(), 960);
  EXPECT_EQ(d.heads, 4);
  EXPECT_EQ(d.head_dim, 128);
  EXPECT_EQ(d.steps, 20);
  EXPECT_EQ(liteattn::workload_preset("wan14b-480p").tokens(), 32760);
  EXPECT_EQ(liteattn::workload_preset("wan14b-480p").heads, 40);
  EXPECT_EQ(liteattn::workload_preset("wan13b-480p").heads, 12);
  EXPECT_EQ(liteattn::workload_preset("wan14b-720p").tokens(), 75600);
  auto argument = [](auto f) {
    try {
      f();
    } catch (const liteattn::ArgumentError& e) {
      return e.argument();
    }
    return std::string("<no exception>");
  };
  EXPECT_EQ(argument([] { liteattn::workload_preset("wan99"); }), "preset");
  auto c = small_config();
  c.frames = 0;
  EXPECT_EQ(argument([&] { VideoWorkload w(c); }), "shape");
  c = small_config();
  c.heads = 0;
  EXPECT_EQ(argument([&] { VideoWorkload w(c); }), "heads");
  c = small_config();
  c.head_dim = 8;
  EXPECT_EQ(argument([&] { VideoWorkload w(c); }), "head_dim");
  c = small_config();
  c.steps = 0;
  EXPECT_EQ(argument([&] { VideoWorkload w(c); }), "steps");
  for (float shift : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    c = small_config();
    c.shift = shift;
    EXPECT_EQ(argument([&] { VideoWorkload w(c); }), "shift") << shift;
  }
  // Steps run from 0 to `steps` (sigma 0, the trajectory's end); outside that, an error.
  const VideoWorkload w(small_config());
  const int steps = w.config().steps;
  EXPECT_EQ(w.sigma(steps), 0.0f);
  std::vector<float> q(std::size_t(w.config().tokens() * w.config().heads * w.config().head_dim)), k(q.size()), v(q.size());
  for (int bad : {-1, steps + 1}) {
    EXPECT_EQ(argument([&] { (void)w.sigma(bad); }), "step") << bad;
    EXPECT_EQ(argument([&] { w.generate(bad, q.data(), k.data(), v.data()); }), "step") << bad;
  }
}

struct TrajectoryResult {
  std::vector<double> sparsity;  // per step: fraction of tiles the call skipped
  std::vector<double> error;     // per step: rel L2 of the output against dense (where measured)
};

// The default preset (5 x 12 x 16 tokens, 4 heads, head dim 128, 20 steps), fp32 inputs, the
// kernel's tile shape (128 x 128), running criterion, descending order.
TrajectoryResult trajectory(float threshold, bool error_every_step) {
  const auto cfg = liteattn::workload_preset("default");
  const VideoWorkload w(cfg);
  const i64 L = cfg.tokens(), H = cfg.heads, D = cfg.head_dim;
  Problem p(1, L, L, H, H, D);
  Problem dense(1, L, L, H, H, D);
  std::vector<float> q(std::size_t(L * H * D)), k(q.size()), v(q.size());
  SkipState state;
  TrajectoryResult r;
  for (int step = 0; step < cfg.steps; ++step) {
    w.generate(step, q.data(), k.data(), v.data());
    for (i64 l = 0; l < L; ++l)
      for (i64 h = 0; h < H; ++h)
        for (i64 d = 0; d < D; ++d) {
          const std::size_t n = std::size_t((l * H + h) * D + d);
          p.q.set(0, l, h, d, q[n]);
          p.k.set(0, l, h, d, k[n]);
          p.v.set(0, l, h, d, v[n]);
        }
    auto args = p.args(false);
    args.skip.enabled = true;
    args.skip.threshold = threshold;
    liteattn::attention(args, state);
    r.sparsity.push_back(state.stats().last_sparsity());
    if (error_every_step || step + 1 == cfg.steps) {
      // Dense with the library (validated against fp64 in test_dense), same inputs.
      dense.q = p.q, dense.k = p.k, dense.v = p.v;
      liteattn::attention(dense.args(false));
      std::vector<double> a, b;
      for (i64 l = 0; l < L; ++l)
        for (i64 h = 0; h < H; ++h)
          for (i64 d = 0; d < D; ++d) a.push_back(p.out.get(0, l, h, d)), b.push_back(dense.out.get(0, l, h, d));
      r.error.push_back(rel_l2(a, b));
    }
  }
  return r;
}

TEST(Workload, DefaultTrajectoryKeepsItsCharacter) {
  const auto r = trajectory(-10.0f, false);
  std::printf("threshold -10: sparsity per step:");
  for (double s : r.sparsity) std::printf(" %.3f", s);
  std::printf("\nthreshold -10: final rel L2 error vs dense: %.5f\n", r.error.back());
  for (std::size_t s = 1; s < r.sparsity.size(); ++s) EXPECT_GE(r.sparsity[s], r.sparsity[s - 1]) << "step " << s;
  EXPECT_EQ(r.sparsity.front(), 0.0) << "the first call reads a full mask";
  EXPECT_GT(r.sparsity.back(), 0.0);
  EXPECT_LT(r.error.back(), 0.05);
  ::testing::Test::RecordProperty("final_sparsity", std::to_string(r.sparsity.back()));
  ::testing::Test::RecordProperty("final_rel_l2", std::to_string(r.error.back()));
}

}  // namespace
