// liteattn verify: random shapes (odd lengths included), the CPU reference and the GPU's default
// kernel (or the named one) against the CPU reference and an independent fp64 replay under the
// same read mask.
#include <cmath>
#include <cstdio>
#include <random>

#include "commands.hpp"
#include "common.hpp"
#include "core/plan.hpp"
#include "fp64_reference.hpp"

namespace liteattn::cli {
namespace {

constexpr double kMarginTolerance = 1e-3;  // method.md section 8
constexpr int kStepsPerCase = 3;

struct Case {
  std::int64_t B, Lq, Lk, H, Hkv, D;
  DType dtype;
  float threshold;
  Criterion criterion;
  VisitOrder order;
};

// Inputs whose logits decay with the distance between query and key positions, so that
// skipping happens, plus random content; never zeros.
void make_inputs(const Case& c, std::mt19937_64& rng, std::vector<float>& q, std::vector<float>& k, std::vector<float>& v) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float root = std::pow(float(c.D), 0.25f);
  const float span = float(c.Lk) / 32.0f;  // key positions in units of 32 tokens, centred
  const float a = std::min(2.0f, 800.0f / (span * span / 4 + 1));
  auto fill = [&](std::vector<float>& t, std::int64_t L, std::int64_t heads, bool is_query) {
    t.resize(std::size_t(c.B * L * heads * c.D));
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t l = 0; l < L; ++l)
        for (std::int64_t h = 0; h < heads; ++h) {
          float* x = &t[std::size_t(((b * L + l) * heads + h) * c.D)];
          for (std::int64_t d = 0; d < c.D; ++d) x[d] = 0.5f * normal(rng);
          const float pos = (is_query ? float(l) * float(c.Lk) / float(c.Lq) : float(l)) / 32.0f - span / 2;
          x[0] = root * std::sqrt(2 * a) * pos;
          x[1] = is_query ? root : -root * a * pos * pos;
        }
  };
  fill(q, c.Lq, c.H, true);
  fill(k, c.Lk, c.Hkv, false);
  v.resize(k.size());
  for (auto& x : v) x = normal(rng);
}

std::vector<float> round_to(const std::vector<float>& x, DType dtype) {
  if (dtype == DType::f32) return x;
  std::vector<float> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    r[i] = dtype == DType::bf16 ? bf16_to_float(float_to_bf16(x[i])) : f16_to_float(float_to_f16(x[i]));
  return r;
}

// Copies a state's host snapshot into another state (same layout, possibly another device).
void load_state(SkipState& state, const std::vector<std::uint32_t>& read_mask, const std::vector<std::uint32_t>& visits,
                const std::vector<float>& row_max) {
  const auto& key = state.key();
  const std::int64_t rows = key.rows(), words = key.words_per_row();
  std::vector<std::uint32_t> both(std::size_t(2 * rows * words), 0u);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t w = 0; w < words; ++w) both[std::size_t(((visits[r] & 1u) * rows + r) * words + w)] = read_mask[r * words + w];
  copy_to_state(state.view().mask, both.data(), both.size() * 4, key.device);
  copy_to_state(state.view().row_visits, visits.data(), visits.size() * 4, key.device);
  if (!row_max.empty()) copy_to_state(state.view().row_max, row_max.data(), row_max.size() * 4, key.device);
}

struct Check {
  double out_err = 0, lse_err = 0, cpu_out_err = 0;
  std::int64_t bad_bits = 0, near_tie_bits = 0;
  double sparsity = 0;
  bool pass = true;
};

Check run_case(const Case& c, Device device, std::optional<Backend> named_backend, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> hq, hk, hv;
  make_inputs(c, rng, hq, hk, hv);
  DeviceTensor q(device, c.dtype, {c.B, c.Lq, c.H, c.D}), k(device, c.dtype, {c.B, c.Lk, c.Hkv, c.D}),
      v(device, c.dtype, {c.B, c.Lk, c.Hkv, c.D}), out(device, c.dtype, {c.B, c.Lq, c.H, c.D}),
      lse(device, DType::f32, {c.B, c.H, c.Lq});
  q.upload(hq);
  k.upload(hk);
  v.upload(hv);
  const auto rq = round_to(hq, c.dtype), rk = round_to(hk, c.dtype), rv = round_to(hv, c.dtype);

  AttentionArgs args = make_args(q, k, v, out, &lse);
  args.backend = named_backend;
  args.skip = {true, c.threshold, c.criterion, c.order};
  const Backend backend = select_backend(args);
  const TileShape tile = tile_shape(backend, c.D, c.dtype);
  SkipState state;

  // The CPU reference on the same inputs, for GPU backends.
  const Device cpu{DeviceKind::cpu, 0};
  DeviceTensor cq(cpu, c.dtype, {c.B, c.Lq, c.H, c.D}), ck(cpu, c.dtype, {c.B, c.Lk, c.Hkv, c.D}),
      cv(cpu, c.dtype, {c.B, c.Lk, c.Hkv, c.D}), cout(cpu, c.dtype, {c.B, c.Lq, c.H, c.D});
  AttentionArgs cpu_args = make_args(cq, ck, cv, cout);
  cpu_args.skip = args.skip;
  cpu_args.cpu_tile = tile;
  SkipState cpu_state;
  const bool compare_cpu = device.kind != DeviceKind::cpu;
  if (compare_cpu) {
    cq.upload(hq);
    ck.upload(hk);
    cv.upload(hv);
  }

  Check check;
  for (int step = 0; step < kStepsPerCase; ++step) {
    state.prepare(state_key(args), nullptr);  // shapes it on the first step, a no-op afterwards
    const auto read_mask = state.read_mask();
    const auto visits = state.row_visits();
    const auto stored = state.row_max();
    out.fill_bytes(0xff);  // poison: every element must be written
    attention(args, state);
    synchronize(device);

    const CallPlan plan = make_plan(args, backend);
    const Fp64Inputs in{&rq, &rk, &rv, &read_mask, &visits, stored.empty() ? nullptr : &stored};
    const Fp64Result ref = fp64_replay(plan, in);
    const auto got = out.download(), got_lse = lse.download();
    std::vector<float> ref_out(ref.out.begin(), ref.out.end());
    check.out_err = std::max(check.out_err, rel_l2(got, ref_out));
    for (std::size_t i = 0; i < got_lse.size(); ++i) {
      const bool ref_empty = std::isinf(ref.lse[i]);
      if (ref_empty != std::isinf(got_lse[i]) || std::isnan(got_lse[i])) check.lse_err = INFINITY;
      else if (!ref_empty) check.lse_err = std::max(check.lse_err, std::fabs(double(got_lse[i]) - ref.lse[i]));
    }
    const auto written = state.read_mask();
    const std::int64_t nk = plan.k_tiles, words = plan.words;
    for (std::int64_t r = 0; r < plan.batch * plan.heads * plan.q_tiles; ++r)
      for (std::int64_t j = 0; j < words * 32; ++j) {
        const bool a = mask_bit(&written[r * words], j), b = mask_bit(&ref.written[r * words], j);
        if (a == b) continue;
        if (j < nk && ref.margin[r * nk + j] < kMarginTolerance) ++check.near_tie_bits;
        else ++check.bad_bits;
      }
    check.sparsity = state.stats().last_sparsity();

    if (compare_cpu) {
      cpu_state.prepare(state_key(cpu_args), nullptr);
      load_state(cpu_state, read_mask, visits, stored);
      attention(cpu_args, cpu_state);
      check.cpu_out_err = std::max(check.cpu_out_err, rel_l2(got, cout.download()));
    }
  }
  const double tolerance = c.dtype == DType::f32 ? 1e-5 : 1e-2;
  check.pass = check.out_err <= tolerance && check.lse_err <= 1e-3 && check.bad_bits == 0 &&
               (!compare_cpu || check.cpu_out_err <= tolerance);
  return check;
}

}  // namespace

int run_verify(const std::vector<std::string>& raw) {
  const Options o(raw, {"backend", "cases", "seed"}, {});
  const std::string which = o.choice("backend", "all", {"all", "cpu", "cuda", "sm90", "sm80"});
  const int cases = int(o.integer("cases", 12, 1, 10000));
  std::mt19937_64 rng(std::uint64_t(o.integer("seed", 1, 0, std::int64_t(1) << 62)));

  // The backends to verify: the CPU reference, and the GPU's kernel (chosen by its capability,
  // or named: sm80 on a Hopper GPU verifies the portable fallback).
  std::vector<BackendChoice> targets;
  if (which == "all" || which == "cpu") targets.push_back({{DeviceKind::cpu, 0}, std::nullopt});
  if (which != "cpu") {
    if (cuda_available()) targets.push_back(pick_backend(which == "all" ? "cuda" : which));
    else if (which != "all") throw UsageError("--backend: " + which + " requested but no CUDA device is available");
    else std::printf("no CUDA device: verifying the CPU reference only\n");
  }

  const std::int64_t lengths[] = {1, 7, 127, 128, 129, 300, 1000};
  std::printf("%-6s %-7s %-28s %-9s %-14s %-6s %9s %9s %9s %5s %5s %8s %s\n", "case", "backend", "B,Lq,Lk,H,Hkv,D", "dtype",
              "order", "crit", "out_err", "lse_err", "cpu_err", "bad", "ties", "sparsity", "result");
  int failures = 0;
  for (int n = 0; n < cases; ++n) {
    for (const BackendChoice& target : targets) {
      const Device device = target.device;
      const bool gpu = device.kind == DeviceKind::cuda;
      Case c;
      c.B = 1 + std::int64_t(rng() % 2);
      c.Lq = lengths[rng() % std::size(lengths)];
      c.Lk = (rng() % 3 == 0) ? c.Lq : lengths[rng() % std::size(lengths)];
      c.Hkv = 1 + std::int64_t(rng() % 2);
      c.H = c.Hkv * (1 + std::int64_t(rng() % 2));
      c.D = (rng() % 2) ? 64 : 128;
      const DType dtypes[] = {DType::bf16, DType::f16, DType::f32};
      c.dtype = dtypes[rng() % (gpu ? 2 : 3)];
      c.threshold = -2.0f - float(rng() % 7);
      c.criterion = (rng() % 2) ? Criterion::running : Criterion::previous;
      c.order = VisitOrder(rng() % 3);
      const Check r = run_case(c, device, target.backend, rng());
      failures += !r.pass;
      char shape[64];
      std::snprintf(shape, sizeof shape, "%lld,%lld,%lld,%lld,%lld,%lld", (long long)c.B, (long long)c.Lq, (long long)c.Lk,
                    (long long)c.H, (long long)c.Hkv, (long long)c.D);
      const std::string backend = target.backend ? std::string(to_string(*target.backend)) : default_backend_name(device);
      std::printf("%-6d %-7s %-28s %-9s %-14s %-6s %9.2e %9.2e %9.2e %5lld %5lld %7.1f%% %s\n", n, backend.c_str(), shape,
                  std::string(to_string(c.dtype)).c_str(), std::string(to_string(c.order)).c_str(),
                  std::string(to_string(c.criterion)).c_str(), r.out_err, r.lse_err, gpu ? r.cpu_out_err : 0.0,
                  (long long)r.bad_bits, (long long)r.near_tie_bits, 100 * r.sparsity, r.pass ? "pass" : "FAIL");
      std::fflush(stdout);
    }
  }
  const int total = cases * int(targets.size());
  std::printf("%d passed, %d failed\n", total - failures, failures);
  return failures ? 1 : 0;
}

}  // namespace liteattn::cli
