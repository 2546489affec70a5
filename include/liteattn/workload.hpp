// The synthetic video workload: video-DiT-like attention inputs along a denoising
// trajectory, deterministic by seed. Results on it are results on a synthetic workload, never on
// a real model.
//
// Per head, q and k = a distance-decay part (exact -a|x-y|^2 logits through inner products of
// positions, a from local to global across heads) + a semantic part (tokens in clusters) weighted
// by (1 - sigma_t) + a fixed-noise part weighted by sigma_t. The noise is drawn once: every step
// sees the same noise with a smaller weight, as in flow-matching sampling.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace liteattn {

struct WorkloadConfig {
  int frames = 5, height = 12, width = 16;  // tokens = frames * height * width
  int heads = 4;
  int head_dim = 128;
  int steps = 20;
  std::uint64_t seed = 0;
  float shift = 5.0f;  // flow-matching time shift, as in Wan

  std::int64_t tokens() const { return std::int64_t(frames) * height * width; }
};

// Named shapes: "default" (5x12x16, 4 heads), "wan13b-480p" (21x30x52, 12 heads),
// "wan14b-480p" (21x30x52, 40 heads), "wan14b-720p" (21x45x80, 40 heads). Head dim 128.
WorkloadConfig workload_preset(std::string_view name);

class VideoWorkload {
 public:
  explicit VideoWorkload(const WorkloadConfig& config);

  const WorkloadConfig& config() const { return config_; }
  // Noise level of a step in [0, steps]: 1 at the first step, 0 at `steps`, the end of the
  // trajectory (shifted flow-matching schedule).
  float sigma(int step) const;
  // The local scale a of a head: 0.5 (local) for head 0 down to 0.02 (global) for the last,
  // log-spaced with more heads near the local end (src/core/workload.cpp, kLocalSkew).
  float locality(int head) const;

  // Fills contiguous fp32 (1, L, H, D) q, k, v for `step` in [0, steps] (each tokens * heads *
  // head_dim floats).
  void generate(int step, float* q, float* k, float* v) const;

 private:
  WorkloadConfig config_;
  std::vector<int> cluster_;  // semantic cluster of each token
};

}  // namespace liteattn
