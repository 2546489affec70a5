#include "trajectory.hpp"

#include "common.hpp"

namespace liteattn::cli {

WorkloadConfig workload_from_options(const Options& o, bool on_gpu, int default_steps) {
  WorkloadConfig w = workload_preset(o.choice("preset", on_gpu ? "wan13b-480p" : "default",
                                              {"default", "wan13b-480p", "wan14b-480p", "wan14b-720p"}));
  w.frames = int(o.integer("frames", w.frames, 1, 1 << 16));
  w.height = int(o.integer("height", w.height, 1, 1 << 16));
  w.width = int(o.integer("width", w.width, 1, 1 << 16));
  w.heads = int(o.integer("heads", w.heads, 1, 1024));
  w.head_dim = int(o.integer("head-dim", w.head_dim, 16, 256));
  w.steps = int(o.integer("steps", default_steps > 0 ? default_steps : w.steps, 1, 1000));
  w.seed = std::uint64_t(o.integer("seed", 0, 0, std::int64_t(1) << 62));
  return w;
}

Trajectory::Trajectory(Device device, DType dtype, const WorkloadConfig& config, const Options& o)
    : workload_(config),
      q_(device, dtype, {1, config.tokens(), config.heads, config.head_dim}),
      k_(device, dtype, {1, config.tokens(), config.heads, config.head_dim}),
      v_(device, dtype, {1, config.tokens(), config.heads, config.head_dim}),
      out_(device, dtype, {1, config.tokens(), config.heads, config.head_dim}),
      dense_out_(device, dtype, {1, config.tokens(), config.heads, config.head_dim}),
      hq_(std::size_t(q_.numel())), hk_(hq_.size()), hv_(hq_.size()) {
  const bool on_gpu = device.kind == DeviceKind::cuda;
  args = make_args(q_, k_, v_, out_);
  args.cpu_threads = int(o.integer("threads", 0, 0, 1024));
  if (o.has("tile")) {
    if (on_gpu) throw UsageError("--tile: only the CPU backend takes a tile shape (the kernel's is fixed)");
    const int t = int(o.integer("tile", 64, 1, 4096));
    args.cpu_tile = TileShape{t, t};
  } else if (!on_gpu && config.tokens() < 4096) {
    // The reduced CPU workload has 960 tokens: 64-token tiles keep the tile grid (15 x 15) fine
    // enough to show the video's locality, as 128-token tiles do on the full-size shapes.
    args.cpu_tile = TileShape{64, 64};
  }
  dense = make_args(q_, k_, v_, dense_out_);
  dense.skip.enabled = false;
  dense.cpu_threads = args.cpu_threads;
  dense.cpu_tile = args.cpu_tile;  // same accumulation order: at 0% sparsity the outputs agree bit for bit
}

void Trajectory::load_step(int step) {
  workload_.generate(step, hq_.data(), hk_.data(), hv_.data());
  q_.upload(hq_);
  k_.upload(hk_);
  v_.upload(hv_);
}

}  // namespace liteattn::cli
