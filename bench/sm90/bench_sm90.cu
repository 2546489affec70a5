// Benchmark of the Hopper kernel through the public API (issue 5): dense, detection on with
// nothing skipped (threshold -inf: every vote and the mask bookkeeping run), and sparse calls
// on random masks written into the state. CUDA events, warm-up, median of repeats; the state is
// restored before every timed call so each repeat does the same work. Inputs are random normal
// values (never zeros). Prints one JSON object on stdout; bench/bench_sm90.py adds cuDNN.
//
// usage: liteattn_bench_sm90 [--shapes B,L,H[;B,L,H...]] [--dim 128] [--repeats N] [--sparsity s,s,...]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "liteattn/liteattn.hpp"

namespace {

#define CHECK(expr)                                                                            \
  do {                                                                                         \
    cudaError_t e_ = (expr);                                                                   \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #expr, cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

// Random normal bf16 values from a counter-based hash (Box-Muller), so no curand dependency.
__global__ void fill_normal_bf16(std::uint16_t* data, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 27; x *= 0x94D049BB133111EBull; x ^= x >> 33;
    const float u1 = (float((x >> 40) & 0xFFFFFF) + 1.0f) / 16777217.0f;
    const float u2 = float((x >> 16) & 0xFFFFFF) / 16777216.0f;
    const float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    const std::uint32_t bits = __float_as_uint(z);
    data[i] = std::uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
  }
}

// For the host-overhead breakdown: a launch with a parameter block the size of the kernel's.
struct BigParams {
  unsigned char bytes[1024];
};
__global__ void empty_kernel(BigParams) {}

// Keeps the stream busy while the host enqueues the timed call, so the host overhead of the
// call (reported separately) stays out of the GPU time.
__global__ void spin_kernel(long long ns) {
  const long long start = clock64();
  while (clock64() - start < ns * 2) {}
}

template <class F>
double median_us(F&& f, int n = 50) {
  std::vector<double> us;
  for (int r = 0; r < n; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

struct Shape {
  std::int64_t B, L, H;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Timer {
  cudaEvent_t start, stop;
  Timer() {
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
  }
  ~Timer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<Shape> shapes = {{1, 32760, 40}, {1, 32760, 12}, {1, 75600, 40}, {1, 8192, 40}};
  std::vector<double> sparsities = {0.25, 0.5, 0.75, 0.9};
  std::int64_t D = 128;
  int repeats = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--shapes") {
      shapes.clear();
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ';')) {
        Shape s{};
        std::sscanf(item.c_str(), "%ld,%ld,%ld", &s.B, &s.L, &s.H);
        shapes.push_back(s);
      }
    } else if (flag == "--dim") {
      D = std::atoll(value.c_str());
    } else if (flag == "--repeats") {
      repeats = std::atoi(value.c_str());
    } else if (flag == "--sparsity") {
      sparsities.clear();
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ',')) sparsities.push_back(std::atof(item.c_str()));
    }
  }

  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  Timer timer;
  // Pieces of the host overhead, measured alone (microseconds, medians).
  {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q;
    const double entry = median_us([&] { cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q); });
    const double attr = median_us([&] { cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024); });
    BigParams bp{};
    const double launch = median_us([&] { empty_kernel<<<132, 384, 0, stream>>>(bp); });
    const double memset = median_us([&] { cudaMemsetAsync(nullptr, 0, 0, stream); });
    int value = 0;
    const double getattr = median_us([&] { cudaDeviceGetAttribute(&value, cudaDevAttrComputeCapabilityMajor, 0); });
    CHECK(cudaStreamSynchronize(stream));
    std::fprintf(stderr, "host pieces (us): driver entry point %.2f, cudaFuncSetAttribute %.2f, launch 1KB params %.2f, "
                 "memsetAsync %.2f, cudaDeviceGetAttribute %.2f\n", entry, attr, launch, memset, getattr);
  }
  std::printf("{\"dtype\": \"bf16\", \"head_dim\": %ld, \"repeats\": %d, \"shapes\": [\n", D, repeats);
  for (std::size_t si = 0; si < shapes.size(); ++si) {
    const Shape s = shapes[si];
    const std::size_t n = std::size_t(s.B * s.L * s.H * D);
    std::uint16_t *q, *k, *v, *o;
    CHECK(cudaMalloc(&q, n * 2));
    CHECK(cudaMalloc(&k, n * 2));
    CHECK(cudaMalloc(&v, n * 2));
    CHECK(cudaMalloc(&o, n * 2));
    fill_normal_bf16<<<2048, 256, 0, stream>>>(q, n, 1);
    fill_normal_bf16<<<2048, 256, 0, stream>>>(k, n, 2);
    fill_normal_bf16<<<2048, 256, 0, stream>>>(v, n, 3);
    CHECK(cudaStreamSynchronize(stream));
    const liteattn::Device gpu{liteattn::DeviceKind::cuda, 0};
    liteattn::AttentionArgs args;
    args.q = liteattn::TensorView::contiguous(q, liteattn::DType::bf16, gpu, {s.B, s.L, s.H, D});
    args.k = liteattn::TensorView::contiguous(k, liteattn::DType::bf16, gpu, {s.B, s.L, s.H, D});
    args.v = liteattn::TensorView::contiguous(v, liteattn::DType::bf16, gpu, {s.B, s.L, s.H, D});
    args.out = liteattn::TensorView::contiguous(o, liteattn::DType::bf16, gpu, {s.B, s.L, s.H, D});
    args.stream = stream;
    const double flops = 4.0 * double(s.B * s.H) * double(s.L) * double(s.L) * double(D);

    liteattn::SkipState state;
    std::vector<std::uint32_t> saved_mask;
    std::vector<std::uint32_t> saved_visits;

    // Times `repeats` calls after 2 warm-ups; `restore` runs before each call, outside the timing.
    auto time_calls = [&](auto&& call, auto&& restore) {
      std::vector<double> ms;
      for (int r = 0; r < repeats + 2; ++r) {
        restore();
        spin_kernel<<<1, 1, 0, stream>>>(300000);
        CHECK(cudaEventRecord(timer.start, stream));
        call();
        CHECK(cudaEventRecord(timer.stop, stream));
        CHECK(cudaEventSynchronize(timer.stop));
        float t = 0;
        CHECK(cudaEventElapsedTime(&t, timer.start, timer.stop));
        if (r >= 2) ms.push_back(t);
      }
      return median(ms);
    };
    auto no_restore = [] {};

    // Dense: skipping disabled. Warm up for ~1.5 s first so the clocks settle before timing.
    args.skip.enabled = false;
    {
      const auto t0 = std::chrono::steady_clock::now();
      while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 1.5) {
        liteattn::attention(args);
        CHECK(cudaStreamSynchronize(stream));
      }
    }
    const double dense_ms = time_calls([&] { liteattn::attention(args); }, no_restore);

    // Host overhead: wall time of the call itself (launch, TMA descriptors), no sync inside.
    double host_us = 0, host_enqueue_us = 0;
    {
      CHECK(cudaStreamSynchronize(stream));
      std::vector<double> us;
      for (int r = 0; r < 20; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        liteattn::attention(args);
        const auto t1 = std::chrono::steady_clock::now();
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        CHECK(cudaStreamSynchronize(stream));
      }
      host_us = median(us);
      // Back to back: 10 calls enqueued without syncs in between, so the CPU is not waking up
      // from a stream sync at each call; this is how a model's layers call it.
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < 10; ++r) liteattn::attention(args);
      const auto t1 = std::chrono::steady_clock::now();
      host_enqueue_us = std::chrono::duration<double, std::micro>(t1 - t0).count() / 10;
      CHECK(cudaStreamSynchronize(stream));
      const double validate_us = median_us([&] { liteattn::validate(args); }, 20);
      std::fprintf(stderr, "L=%ld H=%ld: attention() host time %.1f us, of which validate %.1f us\n", s.L, s.H, host_us, validate_us);
    }

    // Detection on, nothing skipped: threshold -inf keeps every tile but runs every vote.
    args.skip.enabled = true;
    args.skip.threshold = -INFINITY;
    state.prepare(liteattn::state_key(args), stream);
    const auto& view = state.view();
    const auto key = view.key;
    auto restore_full = [&] { liteattn::reset_state(view, stream); };
    const double detect_ms = time_calls([&] { liteattn::attention(args, state); }, restore_full);

    // Sparse: random masks written into the read buffer (row_visits 0 -> buffer 0).
    std::printf("  {\"B\": %ld, \"L\": %ld, \"H\": %ld, \"flops\": %.6e, \"dense_ms\": %.4f, \"dense_tflops\": %.2f,"
                " \"detect_ms\": %.4f, \"detect_tflops\": %.2f, \"detect_overhead\": %.4f, \"host_overhead_us\": %.2f,"
                " \"host_enqueue_us\": %.2f,"
                " \"state_bytes\": %zu, \"sparse\": [",
                s.B, s.L, s.H, flops, dense_ms, flops / dense_ms * 1e-9, detect_ms, flops / detect_ms * 1e-9,
                detect_ms / dense_ms - 1.0, host_us, host_enqueue_us, key.total_bytes());
    const std::int64_t rows = key.rows(), words = key.words_per_row(), nk = key.k_tiles();
    std::vector<std::uint32_t> mask(std::size_t(2 * rows * words));
    std::vector<std::uint32_t> zeros(std::size_t(rows), 0u);
    std::mt19937_64 rng(42);
    for (std::size_t pi = 0; pi < sparsities.size(); ++pi) {
      const double target = sparsities[pi];
      std::fill(mask.begin(), mask.end(), 0u);
      std::int64_t kept = 0;
      std::bernoulli_distribution keep(1.0 - target);
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < nk; ++j)
          if (keep(rng)) {
            mask[std::size_t(r * words + j / 32)] |= 1u << (j % 32);
            ++kept;
          }
      const double actual = 1.0 - double(kept) / double(rows * nk);
      std::copy(mask.begin(), mask.begin() + rows * words, mask.begin() + rows * words);  // both buffers
      auto restore = [&] {
        CHECK(cudaMemcpyAsync(view.mask, mask.data(), mask.size() * 4, cudaMemcpyHostToDevice, stream));
        CHECK(cudaMemcpyAsync(view.row_visits, zeros.data(), zeros.size() * 4, cudaMemcpyHostToDevice, stream));
      };
      const double ms = time_calls([&] { liteattn::attention(args, state); }, restore);
      const double computed_flops = flops * (1.0 - actual);
      std::printf("%s{\"target\": %.3f, \"sparsity\": %.4f, \"ms\": %.4f, \"tflops_on_computed\": %.2f,"
                  " \"ideal_ms\": %.4f, \"limit_ms\": %.4f}",
                  pi ? ", " : "", target, actual, ms, computed_flops / ms * 1e-9, (1.0 - actual) * dense_ms,
                  ((1.0 - actual) + 0.03) * dense_ms);
    }
    std::printf("]}%s\n", si + 1 < shapes.size() ? "," : "");
    std::fflush(stdout);
    CHECK(cudaFree(q));
    CHECK(cudaFree(k));
    CHECK(cudaFree(v));
    CHECK(cudaFree(o));
  }
  std::printf("]}\n");
  return 0;
}
