// liteattn bench: dense vs sparse timing of one backend on one shape. Sparse runs read a random
// mask of the requested sparsity, restored before every repeat so each repeat does the same work.
#include <cstdio>
#include <fstream>
#include <random>

#include "commands.hpp"
#include "common.hpp"

namespace liteattn::cli {

int run_bench(const std::vector<std::string>& raw) {
  const Options o(raw, {"backend", "batch", "len", "heads", "head-dim", "sparsity", "repeats", "dtype", "out", "seed"}, {});
  const BackendChoice choice = pick_backend(o.choice("backend", "auto", kBackendChoices));
  const Device device = choice.device;
  const bool gpu = device.kind == DeviceKind::cuda;
  const std::int64_t B = o.integer("batch", 1, 1, 64), L = o.integer("len", gpu ? 32760 : 2048, 1, 1 << 22),
                     H = o.integer("heads", gpu ? 40 : 4, 1, 1024), D = o.integer("head-dim", 128, 1, 512);
  const double sparsity = o.number("sparsity", 0.5);
  if (sparsity < 0 || sparsity > 1) throw UsageError("--sparsity: expected a fraction in [0, 1]");
  const int repeats = int(o.integer("repeats", gpu ? 20 : 3, 1, 10000));
  const DType dtype = pick_dtype(o, DType::bf16);

  std::mt19937_64 rng(std::uint64_t(o.integer("seed", 0, 0, std::int64_t(1) << 62)));
  std::normal_distribution<float> normal;
  std::vector<float> host(std::size_t(B * L * H * D));
  DeviceTensor q(device, dtype, {B, L, H, D}), k(device, dtype, {B, L, H, D}), v(device, dtype, {B, L, H, D}),
      out(device, dtype, {B, L, H, D});
  for (DeviceTensor* t : {&q, &k, &v}) {
    for (auto& x : host) x = normal(rng);  // never time zeros
    t->upload(host);
  }

  AttentionArgs args = make_args(q, k, v, out);
  args.backend = choice.backend;
  args.skip.enabled = false;
  const std::string backend = std::string(to_string(select_backend(args)));
  const double dense_ms = median_ms(device, 2, repeats, [&] { attention(args); });

  // Skip detection on, nothing skipped (threshold -inf): the bookkeeping's cost.
  SkipState state;
  args.skip = {true, -INFINITY, Criterion::running, VisitOrder::descending};
  state.prepare(state_key(args));
  const StateKey key = state.key();
  const std::int64_t rows = key.rows(), words = key.words_per_row(), nk = key.k_tiles();
  const std::vector<std::uint32_t> zeros(std::size_t(rows), 0u);
  auto restore = [&](const std::vector<std::uint32_t>& mask) {
    copy_to_state(state.view().mask, mask.data(), mask.size() * 4, device);
    copy_to_state(state.view().row_visits, zeros.data(), zeros.size() * 4, device);
  };
  std::vector<std::uint32_t> full(std::size_t(2 * rows * words), 0u), sparse(full.size(), 0u);
  std::uniform_real_distribution<double> uniform;
  std::int64_t kept = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < nk; ++j) {
      full[std::size_t(r * words + j / 32)] |= 1u << (j % 32);
      if (uniform(rng) >= sparsity) sparse[std::size_t(r * words + j / 32)] |= 1u << (j % 32), ++kept;
    }
  const double detect_ms = median_ms(device, 2, repeats, [&] { attention(args, state); }, [&] { restore(full); });
  const double sparse_ms = median_ms(device, 2, repeats, [&] { attention(args, state); }, [&] { restore(sparse); });
  const double actual_sparsity = 1.0 - double(kept) / double(rows * nk);

  const double flops = 4.0 * double(B * H) * double(L) * double(L) * double(D);
  std::printf("liteattn bench on %s (%s): B=%lld L=%lld H=%lld D=%lld %s, tiles %dx%d, median of %d\n",
              device_name(device).c_str(), backend.c_str(), (long long)B, (long long)L, (long long)H, (long long)D,
              std::string(to_string(dtype)).c_str(), key.tile.m, key.tile.n, repeats);
  std::printf("  dense                 %10.3f ms  %8.1f TFLOP/s\n", dense_ms, flops / dense_ms * 1e-9);
  std::printf("  detect, none skipped  %10.3f ms  %+7.1f%% vs dense\n", detect_ms, 100 * (detect_ms / dense_ms - 1));
  std::printf("  sparse (s = %.3f)     %10.3f ms  ideal %.3f ms (%.2fx of ideal), %8.1f TFLOP/s on computed tiles\n",
              actual_sparsity, sparse_ms, (1 - actual_sparsity) * dense_ms, sparse_ms / ((1 - actual_sparsity) * dense_ms),
              flops * (1 - actual_sparsity) / sparse_ms * 1e-9);
  std::printf("  skip state            %10.3f MB\n", double(key.total_bytes()) / 1e6);
  if (o.has("out")) {
    std::ofstream f(o.text("out", ""));
    if (!f) throw UsageError("--out: cannot write '" + o.text("out", "") + "'");
    f << "{\"device\": \"" << device_name(device) << "\", \"backend\": \"" << backend << "\", \"batch\": " << B
      << ", \"len\": " << L << ", \"heads\": " << H << ", \"head_dim\": " << D << ", \"dtype\": \"" << to_string(dtype)
      << "\", \"dense_ms\": " << dense_ms << ", \"detect_ms\": " << detect_ms << ", \"sparsity\": " << actual_sparsity
      << ", \"sparse_ms\": " << sparse_ms << ", \"state_bytes\": " << key.total_bytes() << "}\n";
  }
  return 0;
}

}  // namespace liteattn::cli
