// Per-step thresholds (method.md section 5): early denoising steps shape the whole video, so
// they get stricter (more negative) thresholds; warm-up steps run dense and leave the state alone.
#pragma once

#include <string>
#include <vector>

#include "liteattn/attention.hpp"

namespace liteattn {

class ThresholdSchedule {
 public:
  // One threshold for every step, no warm-up.
  static ThresholdSchedule constant(float threshold, int warmup_steps = 0);
  // Explicit per-step thresholds; steps past the end reuse the last one.
  static ThresholdSchedule per_step(std::vector<float> thresholds, int warmup_steps = 0);

  float threshold(int step) const;
  bool is_warmup(int step) const { return step < warmup_steps_; }
  int warmup_steps() const { return warmup_steps_; }
  const std::vector<float>& thresholds() const { return thresholds_; }

  // Sets args.skip for `step`: disabled during warm-up, else the step's threshold.
  void apply(int step, SkipOptions& skip) const;

  // JSON: {"warmup_steps": W, "thresholds": [t0, t1, ...]}
  std::string to_json() const;
  static ThresholdSchedule from_json(const std::string& text);
  static ThresholdSchedule load(const std::string& path);
  void save(const std::string& path) const;

 private:
  ThresholdSchedule(std::vector<float> thresholds, int warmup_steps);
  std::vector<float> thresholds_;
  int warmup_steps_ = 0;
};

}  // namespace liteattn
