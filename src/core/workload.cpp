#include "liteattn/workload.hpp"

#include <cmath>
#include <numbers>
#include <string>

#include "core/parallel.hpp"
#include "liteattn/error.hpp"

namespace liteattn {
namespace {

// Constants of the workload, calibrated once on the default reduced shape (5 x 12 x 16 tokens,
// 4 heads, head dim 128, 20 steps, bf16, CPU tile 64 x 64 as the demo picks) with the paper's
// configuration (criterion running, order alternate). tests/cpp/test_workload_character.cpp
// checks the result; `liteattn evaluate` and docs/evaluation.md give the full sweep.
//
// What decides the sparsity at threshold -10 is the distance decay alone: with the semantic and
// noise parts switched off (both ~0) the final sparsity is the same as with them (11.6% for the
// first constants), and a purely geometric bound -- key tile j of query tile i is skippable
// when every row of i is farther than sqrt(6.93 nats / a) from every key of j -- reproduces the
// measured final sparsity within ~1.5 points on every shape tried. On the reduced shape a
// frame is 3 query tiles of 4 rows, so a head's final sparsity at -10 has plateaus: about 60%
// for a > 0.77, 41% for 0.34 < a < 0.77, 28% for 0.28 < a < 0.34, and under 10% below ~0.2
// (a global head skips nothing there). The semantic and noise parts decide the error: they
// move the logits of tiles skipped earlier in the trajectory (the noise fades, the clusters
// grow), which is what a looser threshold pays for.
//
// The first constants spread a log-uniformly over the heads (0.5, 0.17, 0.058, 0.02): final
// sparsity at -10 was 11.6% (alternate; 7.9% descending), far below the 25-45% the workload
// is built to give (tests/cpp/test_workload_character.cpp). Video DiTs have more local than global heads, so a is now log-spaced with the
// spacing squeezed towards the local end: a_h = kMostLocal * (kMostGlobal / kMostLocal)^(f^p),
// f = h / (H - 1), p = kLocalSkew. With p = 4 the default's heads get a = 0.5, 0.49, 0.27, 0.02
// and the paper configuration measures (liteattn demo --order alternate --criterion running):
//   threshold -10: final sparsity 27.0% (mean 22.0%), final rel L2 4.6e-4
//   threshold  -6: final sparsity 34.3% (mean 27.5%), final rel L2 3.5e-3
//   threshold  -3: final sparsity 42.1% (mean 35.4%), final rel L2 1.8e-2
// (p = 2: 18.7% at -10; p = 3: 22.6%; p = 5: 27.6%.) On a mid-size shape, 8 x 16 x 32 = 4096
// tokens, 4 heads, 128 x 128 tiles, 10 steps: 45.5% at -10 (rel L2 5.3e-4), 57.0% at -3 (1.6e-2).
// Caveat for the Wan-size presets: a is in nats per squared pixel, so larger frames are
// sparser. The geometric bound at 21 x 30 x 52 with 12 heads and 128 x 128 tiles is 82% at -10
// (70% with the first, log-uniform spread); these presets measure kernels, not the method's
// sparsity on a real model.
constexpr float kFrameStep = 1.5f;       // one frame step weighs like 1.5 pixels of distance
constexpr float kMostLocal = 0.5f;       // a of head 0: logit falls by 0.5 nats per squared pixel
constexpr float kMostGlobal = 0.02f;     // a of the last head
constexpr float kLocalSkew = 4.0f;       // p above: > 1 puts more heads near the local end
constexpr float kSemanticNats = 3.0f;    // logit bonus between tokens of one cluster at sigma = 0
constexpr float kSemanticJitter = 0.35f; // per-token deviation from the cluster direction
constexpr float kNoiseNats = 2.0f;       // standard deviation of the noise logits at sigma = 1
constexpr int kClusters = 8;             // objects: Voronoi regions in (row, column), fixed over frames
constexpr int kPositionDims = 4;         // x (3 coordinates) against y, and 1 against -a|y|^2

// A counter-based generator: every value is a pure function of (seed, stream, index), so the
// workload does not depend on generation order or threading.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  const std::uint64_t bits = mix(mix(seed ^ mix(stream)) ^ index);
  return (double(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

float normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  const double u1 = uniform(seed, stream, 2 * index), u2 = uniform(seed, stream, 2 * index + 1);
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
}

enum Stream : std::uint64_t { kClusterCentre = 1, kClusterDirection, kJitterQ, kJitterK, kNoiseQ, kNoiseK, kValue };

}  // namespace

WorkloadConfig workload_preset(std::string_view name) {
  WorkloadConfig c;
  if (name == "default") return c;
  c.head_dim = 128;
  c.steps = 50;
  if (name == "wan13b-480p") { c.frames = 21; c.height = 30; c.width = 52; c.heads = 12; return c; }
  if (name == "wan14b-480p") { c.frames = 21; c.height = 30; c.width = 52; c.heads = 40; return c; }
  if (name == "wan14b-720p") { c.frames = 21; c.height = 45; c.width = 80; c.heads = 40; return c; }
  throw ArgumentError("preset", "expected default, wan13b-480p, wan14b-480p or wan14b-720p, got '" + std::string(name) + "'");
}

VideoWorkload::VideoWorkload(const WorkloadConfig& config) : config_(config) {
  if (config.frames < 1 || config.height < 1 || config.width < 1) throw ArgumentError("shape", "expected frames, height, width >= 1");
  if (config.heads < 1) throw ArgumentError("heads", "expected >= 1");
  if (config.head_dim < 16) throw ArgumentError("head_dim", "expected >= 16 (the workload needs room for its parts)");
  if (config.steps < 1) throw ArgumentError("steps", "expected >= 1");
  if (!(std::isfinite(config.shift) && config.shift > 0.0f))
    throw ArgumentError("shift", "expected a finite number > 0, got " + std::to_string(config.shift));
  // Cluster centres in (row, column); each token belongs to the nearest one.
  float centre_row[kClusters], centre_col[kClusters];
  for (int c = 0; c < kClusters; ++c) {
    centre_row[c] = float(uniform(config.seed, kClusterCentre, 2 * c) * config.height);
    centre_col[c] = float(uniform(config.seed, kClusterCentre, 2 * c + 1) * config.width);
  }
  cluster_.resize(std::size_t(config.tokens()));
  for (int f = 0; f < config.frames; ++f)
    for (int r = 0; r < config.height; ++r)
      for (int w = 0; w < config.width; ++w) {
        int best = 0;
        float best_d = 1e30f;
        for (int c = 0; c < kClusters; ++c) {
          const float d = (r - centre_row[c]) * (r - centre_row[c]) + (w - centre_col[c]) * (w - centre_col[c]);
          if (d < best_d) best_d = d, best = c;
        }
        cluster_[(std::size_t(f) * config.height + r) * config.width + w] = best;
      }
}

float VideoWorkload::sigma(int step) const {
  if (step < 0 || step > config_.steps)
    throw ArgumentError("step", "expected 0 to steps = " + std::to_string(config_.steps) + ", got " + std::to_string(step));
  const float t = 1.0f - float(step) / float(config_.steps);  // 1 at the first step
  return config_.shift * t / (1.0f + (config_.shift - 1.0f) * t);
}

float VideoWorkload::locality(int head) const {
  if (config_.heads == 1) return kMostLocal;
  // Log-spaced from kMostLocal to kMostGlobal, squeezed towards the local end (see kLocalSkew).
  const float f = std::pow(float(head) / float(config_.heads - 1), kLocalSkew);
  return kMostLocal * std::pow(kMostGlobal / kMostLocal, f);
}

void VideoWorkload::generate(int step, float* q, float* k, float* v) const {
  const auto& c = config_;
  const int D = c.head_dim, H = c.heads;
  const int semantic_dims = D / 4;
  const int noise_dims = D - kPositionDims - semantic_dims;
  const float s = sigma(step);
  // q and k are both scaled by D^(1/4), so that softmax's 1/sqrt(D) leaves the designed logits.
  const float root = std::pow(float(D), 0.25f);
  const float semantic_norm = std::sqrt(kSemanticNats);
  const float noise_entry = std::sqrt(kNoiseNats) / std::pow(float(noise_dims), 0.25f);
  const float centre_f = 0.5f * (c.frames - 1), centre_r = 0.5f * (c.height - 1), centre_w = 0.5f * (c.width - 1);

  // Tokens are independent and every value is a pure function of its indices, so the result
  // does not depend on the thread count.
  parallel_for(c.tokens(), 0, [&](int, std::int64_t token) {
    const int f = int(token / (c.height * c.width)), r = int(token / c.width % c.height), w = int(token % c.width);
    // Centred coordinates keep |y|^2 small, which matters once k is rounded to bf16.
    const float pos[3] = {(f - centre_f) * kFrameStep, r - centre_r, float(w - centre_w)};
    const float pos2 = pos[0] * pos[0] + pos[1] * pos[1] + pos[2] * pos[2];
    const int cluster = cluster_[std::size_t(token)];
    for (int h = 0; h < H; ++h) {
      const float a = locality(h);
      const std::size_t base = (std::size_t(token) * H + h) * D;
      float* qo = q + base;
      float* ko = k + base;
      float* vo = v + base;
      const std::uint64_t head_seed = c.seed * 1000003ull + std::uint64_t(h);
      // Distance decay: q.k = 2a x.y - a|y|^2 = -a|x - y|^2 + a|x|^2 (the last term is per row).
      for (int i = 0; i < 3; ++i) {
        qo[i] = root * std::sqrt(2.0f * a) * pos[i];
        ko[i] = root * std::sqrt(2.0f * a) * pos[i];
      }
      qo[3] = root;
      ko[3] = root * (-a * pos2);
      // Semantic: a cluster direction of squared norm kSemanticNats plus per-token jitter.
      for (int i = 0; i < semantic_dims; ++i) {
        const std::uint64_t dir_index = (std::uint64_t(cluster) * 4096 + std::uint64_t(h)) * 512 + std::uint64_t(i);
        const float dir = normal(c.seed, kClusterDirection, dir_index) * semantic_norm / std::sqrt(float(semantic_dims));
        const std::uint64_t tok_index = base + std::uint64_t(i);
        const float jq = normal(head_seed, kJitterQ, tok_index) * kSemanticJitter * semantic_norm / std::sqrt(float(semantic_dims));
        const float jk = normal(head_seed, kJitterK, tok_index) * kSemanticJitter * semantic_norm / std::sqrt(float(semantic_dims));
        qo[kPositionDims + i] = root * (1.0f - s) * (dir + jq);
        ko[kPositionDims + i] = root * (1.0f - s) * (dir + jk);
      }
      // Fixed noise, the same draw at every step, weighted by sigma.
      for (int i = 0; i < noise_dims; ++i) {
        const std::uint64_t tok_index = base + std::uint64_t(i);
        qo[kPositionDims + semantic_dims + i] = root * s * noise_entry * normal(head_seed, kNoiseQ, tok_index);
        ko[kPositionDims + semantic_dims + i] = root * s * noise_entry * normal(head_seed, kNoiseK, tok_index);
      }
      // Values: fixed per token, so every key carries its own content.
      for (int i = 0; i < D; ++i) vo[i] = normal(head_seed, kValue, base + std::uint64_t(i));
    }
  });
}

}  // namespace liteattn
