// liteattn evaluate (issue 6): full trajectories of the synthetic video workload for every
// combination of skip criterion x visit order x threshold (and optional per-step schedules),
// each against a dense reference on the same inputs at every step.
//
// Per configuration it reports mean and final sparsity, per-step and final output error against
// dense (relative L2 and relative L1), and the error of the final "latent" of a simple Euler
// integration driven by the attention output,
//     x_{t+1} = x_t + (sigma_{t+1} - sigma_t) * out_t,   x_0 fixed (seeded normal),
// sparse vs dense, so that errors which compound over the trajectory are visible. The workload's
// inputs do not depend on x (it is a model of the attention inputs, not of a network), so the
// latent error is the sigma-weighted sum of the per-step output errors: it shows accumulation,
// not feedback through the network.
//
// The step loop is outermost: each step's inputs and dense output are computed once and shared
// by every configuration, each configuration owning its skip state and its latent.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numbers>
#include <sstream>

#include "commands.hpp"
#include "common.hpp"
#include "trajectory.hpp"

namespace liteattn::cli {
namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, ','))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

std::string json_number(double x) {
  if (std::isnan(x)) return "null";
  if (std::isinf(x)) return x < 0 ? "-1e999" : "1e999";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", x);
  return buffer;
}

std::string json_string(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r + "\"";
}

// sum |a-b| / sum |b| and ||a-b|| / ||b||, in double precision.
struct Errors {
  double rel_l2 = 0, rel_l1 = 0;
};
Errors errors(const std::vector<float>& a, const std::vector<float>& b) {
  double d2 = 0, b2 = 0, d1 = 0, b1 = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    d2 += d * d;
    b2 += double(b[i]) * double(b[i]);
    d1 += std::abs(d);
    b1 += std::abs(double(b[i]));
  }
  return {b2 > 0 ? std::sqrt(d2 / b2) : std::sqrt(d2), b1 > 0 ? d1 / b1 : d1};
}

// The fixed starting latent: a seeded standard normal per element (splitmix64 + Box-Muller, so
// it is the same on every platform and standard library).
std::vector<float> initial_latent(std::size_t n, std::uint64_t seed) {
  auto mix = [](std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  auto uniform = [&](std::uint64_t i) { return (double(mix(mix(seed ^ 0x1a7e47ull) ^ i) >> 11) + 0.5) / 9007199254740992.0; };
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = float(std::sqrt(-2.0 * std::log(uniform(2 * i))) * std::cos(2.0 * std::numbers::pi * uniform(2 * i + 1)));
  return x;
}

struct StepMetrics {
  bool warmup = false;
  double threshold = 0, sparsity = 0, rel_l2 = 0, rel_l1 = 0;
};

struct Config {
  Criterion criterion = Criterion::running;
  VisitOrder order = VisitOrder::descending;
  ThresholdSchedule schedule = ThresholdSchedule::constant(-10.0f);
  std::string schedule_file;  // empty for a constant threshold
  SkipState state;
  std::vector<float> latent;
  std::vector<StepMetrics> steps;
  double latent_rel_l2 = 0, latent_rel_l1 = 0, displacement_rel_l2 = 0;

  double mean_sparsity() const {
    double s = 0;
    for (const auto& m : steps) s += m.sparsity;
    return steps.empty() ? 0 : s / double(steps.size());
  }
  double max_rel_l2() const {
    double e = 0;
    for (const auto& m : steps) e = std::max(e, m.rel_l2);
    return e;
  }
  std::string threshold_label() const {
    if (!schedule_file.empty()) return "schedule " + schedule_file;
    const float t = schedule.threshold(0);
    return std::isinf(t) ? "-inf" : json_number(t);
  }
};

}  // namespace

int run_evaluate(const std::vector<std::string>& raw) {
  const Options o(raw,
                  with_workload_options({"backend", "thresholds", "criteria", "orders", "schedules", "dtype", "threads",
                                         "tile", "out", "md"}),
                  {});
  const Device device = pick_device(o.choice("backend", "auto", {"auto", "cpu", "cuda"}));
  const bool on_gpu = device.kind == DeviceKind::cuda;

  const WorkloadConfig w = workload_from_options(o, on_gpu, 0);
  const DType dtype = pick_dtype(o, DType::bf16);

  std::vector<double> thresholds;
  for (const auto& t : split_list(o.text("thresholds", "-14,-12,-10,-8,-6,-4,-3,-2"))) {
    char* end = nullptr;
    const double value = std::strtod(t.c_str(), &end);
    if (end == t.c_str() || *end != '\0' || !(value <= 0))
      throw UsageError("--thresholds: expected comma-separated numbers <= 0 (log2 units), got '" + t + "'");
    thresholds.push_back(value);
  }
  std::vector<Criterion> criteria;
  for (const auto& c : split_list(o.text("criteria", "running,previous"))) criteria.push_back(parse_criterion(c, "--criteria"));
  std::vector<VisitOrder> orders;
  for (const auto& v : split_list(o.text("orders", "descending,alternate,diagonal_first")))
    orders.push_back(parse_visit_order(v, "--orders"));
  const std::vector<std::string> schedule_files = split_list(o.text("schedules", ""));
  if (criteria.empty()) throw UsageError("--criteria: expected at least one criterion");
  if (orders.empty()) throw UsageError("--orders: expected at least one order");
  if (thresholds.empty() && schedule_files.empty()) throw UsageError("--thresholds: expected at least one threshold");

  // Every (criterion, order) pair with every threshold, then with every schedule.
  std::vector<Config> configs;
  for (Criterion c : criteria)
    for (VisitOrder v : orders) {
      for (double t : thresholds) {
        Config cfg;
        cfg.criterion = c, cfg.order = v, cfg.schedule = ThresholdSchedule::constant(float(t));
        configs.push_back(std::move(cfg));
      }
      for (const auto& file : schedule_files) {
        Config cfg;
        cfg.criterion = c, cfg.order = v, cfg.schedule = ThresholdSchedule::load(file), cfg.schedule_file = file;
        configs.push_back(std::move(cfg));
      }
    }

  const std::int64_t L = w.tokens(), H = w.heads, D = w.head_dim;
  Trajectory trajectory(device, dtype, w, o);
  AttentionArgs& args = trajectory.args;
  const VideoWorkload& workload = trajectory.workload();

  const std::vector<float> x0 = initial_latent(trajectory.elements(), w.seed);
  std::vector<float> dense_latent = x0;
  for (auto& c : configs) c.latent = x0;

  const TileShape tile = state_key(args).tile;
  std::printf("liteattn evaluate: %s on %s, %d x %d x %d tokens (%lld), %lld heads, head dim %lld, %s, tile %dx%d, %d steps, "
              "%zu configurations\n",
              default_backend_name(device).c_str(), device_name(device).c_str(), w.frames, w.height, w.width, (long long)L, (long long)H,
              (long long)D, std::string(to_string(dtype)).c_str(), tile.m, tile.n, w.steps, configs.size());
  std::printf("(synthetic video workload, not a real model)\n");
  const bool tty = isatty(fileno(stderr));

  for (int step = 0; step < w.steps; ++step) {
    if (tty) std::fprintf(stderr, "  step %d/%d: inputs and dense...\r", step + 1, w.steps);
    trajectory.load_step(step);
    attention(trajectory.dense);
    const std::vector<float> reference = trajectory.dense_out().download();
    const float dsigma = workload.sigma(step + 1) - workload.sigma(step);
    for (std::size_t i = 0; i < reference.size(); ++i) dense_latent[i] += dsigma * reference[i];

    for (std::size_t ci = 0; ci < configs.size(); ++ci) {
      if (tty) std::fprintf(stderr, "  step %d/%d: configuration %zu/%zu   \r", step + 1, w.steps, ci + 1, configs.size());
      Config& c = configs[ci];
      c.schedule.apply(step, args.skip);
      args.skip.criterion = c.criterion;
      args.skip.order = c.order;
      StepMetrics m;
      m.warmup = !args.skip.enabled;
      m.threshold = c.schedule.threshold(step);
      if (m.warmup) {
        attention(args);  // dense, the state untouched
      } else {
        attention(args, c.state);
        m.sparsity = c.state.stats().last_sparsity();
      }
      const std::vector<float> result = trajectory.out().download();
      const Errors e = errors(result, reference);
      m.rel_l2 = e.rel_l2;
      m.rel_l1 = e.rel_l1;
      for (std::size_t i = 0; i < result.size(); ++i) c.latent[i] += dsigma * result[i];
      c.steps.push_back(m);
    }
  }
  if (tty) std::fprintf(stderr, "%60s\r", "");

  std::vector<float> displacement(dense_latent.size());
  for (std::size_t i = 0; i < displacement.size(); ++i) displacement[i] = dense_latent[i] - x0[i];
  for (auto& c : configs) {
    const Errors e = errors(c.latent, dense_latent);
    c.latent_rel_l2 = e.rel_l2;
    c.latent_rel_l1 = e.rel_l1;
    std::vector<float> moved(c.latent.size());
    for (std::size_t i = 0; i < moved.size(); ++i) moved[i] = c.latent[i] - x0[i];
    c.displacement_rel_l2 = errors(moved, displacement).rel_l2;
    std::vector<float>().swap(c.latent);
  }

  // Console and markdown table.
  const std::string backend = default_backend_name(device);
  std::ostringstream md;
  md << "Synthetic video workload (not a real model): " << backend << " backend (" << device_name(device) << "), "
     << w.frames << " x " << w.height << " x " << w.width << " = " << L << " tokens, " << H << " heads, head dim " << D << ", "
     << to_string(dtype) << ", tile " << tile.m << "x" << tile.n << ", " << w.steps << " steps, seed " << w.seed << ".\n\n"
     << "| criterion | order | threshold | mean sparsity | final sparsity | final rel L2 | final rel L1 | max step rel L2 | "
        "latent rel L2 | latent displacement rel L2 |\n"
     << "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& c : configs) {
    const StepMetrics& last = c.steps.back();
    char row[512];
    std::snprintf(row, sizeof row, "| %s | %s | %s | %.1f%% | %.1f%% | %.2e | %.2e | %.2e | %.2e | %.2e |\n",
                  std::string(to_string(c.criterion)).c_str(), std::string(to_string(c.order)).c_str(),
                  c.threshold_label().c_str(), 100 * c.mean_sparsity(), 100 * last.sparsity, last.rel_l2, last.rel_l1,
                  c.max_rel_l2(), c.latent_rel_l2, c.displacement_rel_l2);
    md << row;
  }
  std::fputs(md.str().c_str(), stdout);

  if (o.has("md")) {
    std::ofstream f(o.text("md", ""));
    if (!f) throw UsageError("--md: cannot write '" + o.text("md", "") + "'");
    f << md.str();
    std::printf("wrote %s\n", o.text("md", "").c_str());
  }
  if (o.has("out")) {
    std::ostringstream j;
    j << "{\n  \"tool\": \"liteattn evaluate\",\n  \"workload\": \"synthetic video workload (not a real model)\",\n"
      << "  \"backend\": \"" << backend << "\",\n  \"device\": " << json_string(device_name(device)) << ",\n"
      << "  \"shape\": {\"batch\": 1, \"frames\": " << w.frames << ", \"height\": " << w.height << ", \"width\": " << w.width
      << ", \"tokens\": " << L << ", \"heads\": " << H << ", \"head_dim\": " << D << "},\n"
      << "  \"dtype\": \"" << to_string(dtype) << "\",\n  \"tile\": {\"m\": " << tile.m << ", \"n\": " << tile.n << "},\n"
      << "  \"seed\": " << w.seed << ",\n  \"steps\": " << w.steps << ",\n  \"sigmas\": [";
    for (int s = 0; s <= w.steps; ++s) j << (s ? ", " : "") << json_number(workload.sigma(s));
    j << "],\n  \"configs\": [\n";
    for (std::size_t ci = 0; ci < configs.size(); ++ci) {
      const Config& c = configs[ci];
      const StepMetrics& last = c.steps.back();
      j << "    {\"criterion\": \"" << to_string(c.criterion) << "\", \"order\": \"" << to_string(c.order) << "\", ";
      if (c.schedule_file.empty())
        j << "\"threshold\": " << json_number(c.schedule.threshold(0)) << ", \"schedule_file\": null, ";
      else
        j << "\"threshold\": null, \"schedule_file\": " << json_string(c.schedule_file) << ", ";
      j << "\"schedule\": " << c.schedule.to_json() << ",\n     \"mean_sparsity\": " << json_number(c.mean_sparsity())
        << ", \"final_sparsity\": " << json_number(last.sparsity) << ", \"final_rel_l2\": " << json_number(last.rel_l2)
        << ", \"final_rel_l1\": " << json_number(last.rel_l1) << ", \"max_step_rel_l2\": " << json_number(c.max_rel_l2())
        << ", \"latent_rel_l2\": " << json_number(c.latent_rel_l2) << ", \"latent_rel_l1\": " << json_number(c.latent_rel_l1)
        << ", \"latent_displacement_rel_l2\": " << json_number(c.displacement_rel_l2) << ",\n     \"per_step\": {";
      auto series = [&](const char* name, auto get) {
        j << "\"" << name << "\": [";
        for (std::size_t s = 0; s < c.steps.size(); ++s) j << (s ? ", " : "") << json_number(get(c.steps[s]));
        j << "]";
      };
      series("threshold", [](const StepMetrics& m) { return m.threshold; });
      j << ", ";
      series("sparsity", [](const StepMetrics& m) { return m.sparsity; });
      j << ", ";
      series("rel_l2", [](const StepMetrics& m) { return m.rel_l2; });
      j << ", ";
      series("rel_l1", [](const StepMetrics& m) { return m.rel_l1; });
      j << "}}" << (ci + 1 < configs.size() ? "," : "") << "\n";
    }
    j << "  ]\n}\n";
    std::ofstream f(o.text("out", ""));
    if (!f) throw UsageError("--out: cannot write '" + o.text("out", "") + "'");
    f << j.str();
    std::printf("wrote %s\n", o.text("out", "").c_str());
  }
  return 0;
}

}  // namespace liteattn::cli
