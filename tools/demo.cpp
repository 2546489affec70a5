// liteattn demo: the synthetic video workload's trajectory with a LiteAttention state and, at
// every step, a dense reference on the same inputs.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "common.hpp"
#include "trajectory.hpp"

namespace liteattn::cli {
namespace {

struct StepResult {
  int step = 0;
  bool warmup = false;
  double sparsity = 0, rel_l2 = 0, time_ms = 0, dense_time_ms = 0;
  std::vector<double> head_sparsity;
};

std::string json_number(double x) {
  if (std::isinf(x)) return x < 0 ? "-1e999" : "1e999";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", x);
  return buffer;
}

void write_json(const std::string& path, const std::string& backend, const std::string& device, const WorkloadConfig& w,
                DType dtype, TileShape tile, const SkipOptions& skip, const ThresholdSchedule& schedule,
                const std::vector<StepResult>& steps) {
  std::ostringstream j;
  j << "{\n  \"backend\": \"" << backend << "\",\n  \"device\": \"" << device << "\",\n"
    << "  \"shape\": {\"batch\": 1, \"frames\": " << w.frames << ", \"height\": " << w.height << ", \"width\": " << w.width
    << ", \"tokens\": " << w.tokens() << ", \"heads\": " << w.heads << ", \"head_dim\": " << w.head_dim << "},\n"
    << "  \"dtype\": \"" << to_string(dtype) << "\",\n  \"tile\": {\"m\": " << tile.m << ", \"n\": " << tile.n << "},\n"
    << "  \"seed\": " << w.seed << ",\n  \"threshold\": " << json_number(schedule.threshold(0)) << ",\n"
    << "  \"schedule\": " << schedule.to_json() << ",\n"
    << "  \"criterion\": \"" << to_string(skip.criterion) << "\",\n  \"order\": \"" << to_string(skip.order) << "\",\n"
    << "  \"steps\": [\n";
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    j << "    {\"step\": " << s.step << ", \"warmup\": " << (s.warmup ? "true" : "false")
      << ", \"threshold\": " << json_number(schedule.threshold(s.step)) << ", \"sparsity\": " << json_number(s.sparsity)
      << ", \"rel_l2\": " << json_number(s.rel_l2) << ", \"time_ms\": " << json_number(s.time_ms)
      << ", \"dense_time_ms\": " << json_number(s.dense_time_ms) << ", \"head_sparsity\": [";
    for (std::size_t h = 0; h < s.head_sparsity.size(); ++h) j << (h ? ", " : "") << json_number(s.head_sparsity[h]);
    j << "]}" << (i + 1 < steps.size() ? "," : "") << "\n";
  }
  j << "  ]\n}\n";
  std::ofstream out(path);
  if (!out) throw UsageError("--out: cannot write '" + path + "'");
  out << j.str();
}

}  // namespace

int run_demo(const std::vector<std::string>& raw) {
  const Options o(raw,
                  with_workload_options({"backend", "threshold", "schedule", "out", "png", "png-head", "criterion", "order",
                                         "warmup", "dtype", "threads", "tile"}),
                  {});
  if (o.has("threshold") && o.has("schedule")) throw UsageError("--schedule: give either --threshold or --schedule");
  if (o.has("warmup") && o.has("schedule"))
    throw UsageError("--warmup: a schedule file carries its own warm-up steps (\"warmup_steps\"); give one of the two");
  const Device device = pick_device(o.choice("backend", "auto", {"auto", "cpu", "cuda"}));
  const bool on_gpu = device.kind == DeviceKind::cuda;

  const WorkloadConfig w = workload_from_options(o, on_gpu, 20);
  const int warmup = int(o.integer("warmup", 0, 0, w.steps));
  const double threshold = o.number("threshold", -6.0);
  if (threshold > 0) throw UsageError("--threshold: expected a number <= 0 (log2 units), got " + o.text("threshold", ""));
  const ThresholdSchedule schedule =
      o.has("schedule") ? ThresholdSchedule::load(o.text("schedule", "")) : ThresholdSchedule::constant(float(threshold), warmup);
  const DType dtype = pick_dtype(o, DType::bf16);
  const int png_head = int(o.integer("png-head", 0, 0, w.heads - 1));

  SkipOptions skip;
  skip.criterion = parse_criterion(o.choice("criterion", "running", {"running", "previous"}), "--criterion");
  skip.order = parse_visit_order(o.choice("order", "alternate", {"descending", "alternate", "diagonal_first"}), "--order");

  const std::int64_t L = w.tokens(), H = w.heads, D = w.head_dim;
  Trajectory trajectory(device, dtype, w, o);
  AttentionArgs& args = trajectory.args;
  SkipState state;

  const bool tty = isatty(fileno(stdout));
  std::printf("liteattn demo: %s on %s, %d x %d x %d tokens (%lld), %lld heads, head dim %lld, %s, %d steps, %s criterion, %s order\n",
              default_backend_name(device).c_str(), device_name(device).c_str(), w.frames, w.height, w.width, (long long)L, (long long)H,
              (long long)D, std::string(to_string(dtype)).c_str(), w.steps, std::string(to_string(skip.criterion)).c_str(),
              std::string(to_string(skip.order)).c_str());
  std::printf("(synthetic video workload, not a real model)\n");
  std::printf("%5s %9s %10s %9s %11s %10s\n", "step", "threshold", "sparsity", "rel_l2", "time_ms", "dense_ms");

  std::vector<StepResult> results;
  std::vector<MaskPanel> panels;
  std::vector<int> png_steps;
  for (int p = 0; p < 4 && w.steps > 0; ++p) png_steps.push_back(int(std::lround(p * (w.steps - 1) / 3.0)));

  for (int step = 0; step < w.steps; ++step) {
    if (tty) std::fprintf(stderr, "  generating step %d/%d...\r", step + 1, w.steps);
    trajectory.load_step(step);
    schedule.apply(step, args.skip);
    args.skip.criterion = skip.criterion;
    args.skip.order = skip.order;

    StepResult r;
    r.step = step;
    r.warmup = !args.skip.enabled;
    r.time_ms = median_ms(device, 0, 1, [&] { attention(args, state); });
    r.dense_time_ms = median_ms(device, 0, 1, [&] { attention(trajectory.dense); });
    r.rel_l2 = rel_l2(trajectory.out().download(), trajectory.dense_out().download());
    if (state.shaped()) {
      const SkipStats stats = state.stats();
      r.sparsity = r.warmup ? 0.0 : stats.last_sparsity();
      r.head_sparsity = r.warmup ? std::vector<double>(std::size_t(H), 0.0) : stats.last_head_sparsity();
    } else {
      r.head_sparsity.assign(std::size_t(H), 0.0);
    }
    results.push_back(r);
    std::printf("%5d %9.2f %9.1f%% %9.2e %11.2f %10.2f%s\n", step, double(schedule.threshold(step)), 100 * r.sparsity, r.rel_l2,
                r.time_ms, r.dense_time_ms, r.warmup ? "  (warm-up: dense)" : "");
    std::fflush(stdout);

    if (o.has("png") && state.shaped() && std::find(png_steps.begin(), png_steps.end(), step) != png_steps.end()) {
      const auto& key = state.key();
      const auto mask = r.warmup ? state.read_mask() : state.last_read_mask();
      MaskPanel panel;
      panel.step = step;
      const std::int64_t nq = key.q_tiles(), nk = key.k_tiles(), words = key.words_per_row();
      for (std::int64_t i = 0; i < nq; ++i)
        for (std::int64_t j = 0; j < nk; ++j)
          panel.kept.push_back(mask_bit(&mask[std::size_t(((0 * H + png_head) * nq + i) * words)], j));
      panels.push_back(std::move(panel));
    }
  }

  const StepResult& last = results.back();
  std::printf("final: sparsity %.1f%%, rel_l2 %.2e; mean sparsity %.1f%%\n", 100 * last.sparsity, last.rel_l2, [&] {
    double s = 0;
    for (const auto& r : results) s += r.sparsity;
    return 100 * s / double(results.size());
  }());
  const TileShape tile = state_key(args).tile;
  if (o.has("out")) {
    write_json(o.text("out", ""), default_backend_name(device), device_name(device), w, dtype, tile, skip, schedule, results);
    std::printf("wrote %s\n", o.text("out", "").c_str());
  }
  if (o.has("png")) {
    if (panels.empty()) throw UsageError("--png: no skipping step to draw");
    write_mask_png(o.text("png", ""), panels, int(state.key().q_tiles()), int(state.key().k_tiles()));
    std::printf("wrote %s (head %d, steps", o.text("png", "").c_str(), png_head);
    for (const auto& p : panels) std::printf(" %d", p.step);
    std::printf("; white = computed, black = skipped)\n");
  }
  return 0;
}

}  // namespace liteattn::cli
