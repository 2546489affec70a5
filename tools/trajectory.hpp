// What `demo` and `evaluate` share: the tensors of one workload trajectory on a device, and the
// argument pair (LiteAttention call, dense reference call) over them.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "cli_args.hpp"
#include "device_tensor.hpp"

namespace liteattn::cli {

// The workload options every trajectory command takes: --preset (default: the reduced shape on
// the CPU, Wan2.1-1.3B 480p on a GPU), --frames/--height/--width/--heads/--head-dim overrides,
// --steps (default `default_steps`, or the preset's when 0) and --seed.
inline const std::vector<std::string> kWorkloadOptions = {"preset", "frames", "height", "width",
                                                          "heads", "head-dim", "steps", "seed"};
WorkloadConfig workload_from_options(const Options& o, bool on_gpu, int default_steps);

inline std::set<std::string> with_workload_options(std::set<std::string> names) {
  names.insert(kWorkloadOptions.begin(), kWorkloadOptions.end());
  return names;
}

class Trajectory {
 public:
  // Reads --threads and --tile (CPU only) from `o`.
  Trajectory(Device device, DType dtype, const WorkloadConfig& config, const Options& o);

  // Generates the inputs of `step` and uploads them.
  void load_step(int step);

  AttentionArgs args;   // the LiteAttention call (skip options are the caller's)
  AttentionArgs dense;  // dense attention on the same inputs
  const DeviceTensor& out() const { return out_; }
  const DeviceTensor& dense_out() const { return dense_out_; }
  std::size_t elements() const { return hq_.size(); }
  const VideoWorkload& workload() const { return workload_; }

 private:
  VideoWorkload workload_;
  DeviceTensor q_, k_, v_, out_, dense_out_;
  std::vector<float> hq_, hk_, hv_;
};

}  // namespace liteattn::cli
