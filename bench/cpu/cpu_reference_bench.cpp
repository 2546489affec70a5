// Google Benchmark of the CPU reference: dense attention at B1 H4 L4096 D128 (issue 2 asks for
// at least 5 GFLOP/s on a 2-core machine), and the same with a skipping state.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "liteattn/liteattn.hpp"

namespace {

void dense_attention(benchmark::State& bench) {
  const std::int64_t B = 1, H = 4, L = bench.range(0), D = 128;
  std::vector<float> q(std::size_t(B * L * H * D)), k(q.size()), v(q.size()), out(q.size());
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  for (auto* t : {&q, &k, &v})
    for (auto& x : *t) x = normal(rng);
  const liteattn::Device cpu{};
  liteattn::AttentionArgs args;
  args.q = liteattn::TensorView::contiguous(q.data(), liteattn::DType::f32, cpu, {B, L, H, D});
  args.k = liteattn::TensorView::contiguous(k.data(), liteattn::DType::f32, cpu, {B, L, H, D});
  args.v = liteattn::TensorView::contiguous(v.data(), liteattn::DType::f32, cpu, {B, L, H, D});
  args.out = liteattn::TensorView::contiguous(out.data(), liteattn::DType::f32, cpu, {B, L, H, D});
  args.skip.enabled = false;
  for (auto _ : bench) {
    liteattn::attention(args);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 4.0 * double(B * H) * double(L) * double(L) * double(D);
  bench.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(dense_attention)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
