// What `demo` and `evaluate` share: the tensors of one workload trajectory on a device, and the
// argument pair (LiteAttention call, dense reference call) over them.
#pragma once

#include <vector>

#include "cli_args.hpp"
#include "device_tensor.hpp"

namespace liteattn::cli {

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
