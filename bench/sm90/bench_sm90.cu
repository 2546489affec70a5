// Benchmark of the Hopper kernel through the public API (issue 5): dense, detection on with
// nothing skipped (threshold -inf: every vote and the mask bookkeeping run), sparse calls on
// random masks written into the state, and sparse calls on masks the kernel itself writes on the
// synthetic video workload (liteattn::VideoWorkload at a mid-trajectory step), at thresholds
// found by bisection for the target sparsities. CUDA events, warm-up, median of repeats; the
// state is restored before every timed call so each repeat does the same work; detection and
// sparse calls alternate with dense calls, whose paired median sets their overhead and limits. Inputs are random
// normal values or the workload's (never all zeros). Prints one JSON object on stdout;
// bench/bench_sm90.py adds cuDNN.
//
// usage: liteattn_bench_sm90 [--shapes B,L,H[;B,L,H...]] [--dim 128] [--repeats N] [--sparsity s,s,...]
//                            [--workload 1|0] [--workload-step K] [--workload-steps N] [--workload-calls C]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
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

// float -> bf16 bits, round to nearest even (the values here are finite).
__device__ std::uint16_t bf16_bits(float value) {
  const std::uint32_t bits = __float_as_uint(value);
  return std::uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

// Random normal bf16 values from a counter-based hash (Box-Muller), so no curand dependency.
__global__ void fill_normal_bf16(std::uint16_t* data, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 27; x *= 0x94D049BB133111EBull; x ^= x >> 33;
    const float u1 = (float((x >> 40) & 0xFFFFFF) + 1.0f) / 16777217.0f;
    const float u2 = float((x >> 16) & 0xFFFFFF) / 16777216.0f;
    data[i] = bf16_bits(sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
  }
}

// The workload generator writes fp32 on the host; the kernel under test reads bf16.
__global__ void convert_f32_to_bf16(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    out[i] = bf16_bits(in[i]);
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

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
};

// The stream, events and repeat count every timed measurement shares.
struct Bench {
  cudaStream_t stream;
  Timer timer;
  int repeats;

  // One timed call in ms. `restore` runs before it, outside the timed interval, so every repeat
  // starts from the same skip state; the spin kernel keeps the host's enqueue out of the time.
  template <class Call, class Restore>
  double time_one(Call&& call, Restore&& restore) {
    restore();
    spin_kernel<<<1, 1, 0, stream>>>(300000);
    CHECK(cudaEventRecord(timer.start, stream));
    call();
    CHECK(cudaEventRecord(timer.stop, stream));
    CHECK(cudaEventSynchronize(timer.stop));
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, timer.start, timer.stop));
    return t;
  }

  // Median of `repeats` timed calls after 2 warm-ups.
  template <class Call, class Restore>
  double time_calls(Call&& call, Restore&& restore) {
    std::vector<double> ms;
    for (int r = 0; r < repeats + 2; ++r) {
      const double t = time_one(call, restore);
      if (r >= 2) ms.push_back(t);
    }
    return median(ms);
  }

  // Medians of `call` and of a dense call timed alternately (call, dense, call, dense, ...). In
  // sustained runs the card sits at its power limit and its clock drifts as it warms, so series
  // timed one after the other would carry that drift into their ratio; alternating gives both
  // the same clocks.
  struct Paired {
    double ms, dense_ms;
  };
  template <class Call, class Restore, class Dense>
  Paired time_against_dense(Call&& call, Restore&& restore, Dense&& dense) {
    std::vector<double> ms, dense_ms;
    for (int r = 0; r < repeats + 2; ++r) {
      const double t = time_one(call, restore), d = time_one(dense, [] {});
      if (r >= 2) {
        ms.push_back(t);
        dense_ms.push_back(d);
      }
    }
    return {median(ms), median(dense_ms)};
  }

  // Dense calls for `seconds`, so the clocks settle before timing (at the start of a shape, and
  // again after the GPU idled while the host generated the workload).
  void warm_up(liteattn::AttentionArgs args, double seconds) {
    args.skip.enabled = false;
    const auto t0 = std::chrono::steady_clock::now();
    while (seconds_since(t0) < seconds) {
      liteattn::attention(args);
      CHECK(cudaStreamSynchronize(stream));
    }
  }
};

// A device copy of what a call reads from the skip state: both mask buffers, the per-row visit
// counters (their parity picks the buffer a row reads) and the stored row maxima when the
// criterion keeps them. A timed call writes the other buffer and advances the counters, so
// restoring all of them before each repeat makes every repeat read the same mask. (`kept` is
// not saved: the launch zeroes it before every call.)
class StateSnapshot {
 public:
  explicit StateSnapshot(const liteattn::StateKey& key) : key_(key) {
    CHECK(cudaMalloc(&mask_, key.mask_bytes()));
    CHECK(cudaMalloc(&row_visits_, key.row_visits_bytes()));
    if (key.row_max_bytes()) CHECK(cudaMalloc(&row_max_, key.row_max_bytes()));
  }
  ~StateSnapshot() {
    cudaFree(mask_);
    cudaFree(row_visits_);
    cudaFree(row_max_);
  }
  StateSnapshot(const StateSnapshot&) = delete;
  StateSnapshot& operator=(const StateSnapshot&) = delete;

  void capture(const liteattn::SkipStateView& view, cudaStream_t stream) {
    copy(view.mask, mask_, view.row_visits, row_visits_, view.row_max, row_max_, stream);
  }
  void restore(const liteattn::SkipStateView& view, cudaStream_t stream) const {
    copy(mask_, view.mask, row_visits_, view.row_visits, row_max_, view.row_max, stream);
  }

 private:
  void copy(const void* mask_from, void* mask_to, const void* visits_from, void* visits_to, const void* max_from, void* max_to,
            cudaStream_t stream) const {
    CHECK(cudaMemcpyAsync(mask_to, mask_from, key_.mask_bytes(), cudaMemcpyDeviceToDevice, stream));
    CHECK(cudaMemcpyAsync(visits_to, visits_from, key_.row_visits_bytes(), cudaMemcpyDeviceToDevice, stream));
    if (key_.row_max_bytes()) CHECK(cudaMemcpyAsync(max_to, max_from, key_.row_max_bytes(), cudaMemcpyDeviceToDevice, stream));
  }

  liteattn::StateKey key_;
  void* mask_ = nullptr;
  void* row_visits_ = nullptr;
  void* row_max_ = nullptr;
};

// Writes a random mask into the state: each key tile kept with probability 1 - target, the same
// mask in both buffers, visit counters 0 (so every row reads buffer 0). Returns the sparsity.
double write_random_mask(const liteattn::SkipStateView& view, double target, std::mt19937_64& rng, cudaStream_t stream) {
  const auto& key = view.key;
  const std::int64_t rows = key.rows(), words = key.words_per_row(), nk = key.k_tiles();
  std::vector<std::uint32_t> mask(std::size_t(2 * rows * words), 0u);
  const std::vector<std::uint32_t> zeros(std::size_t(rows), 0u);
  std::int64_t kept = 0;
  std::bernoulli_distribution keep(1.0 - target);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < nk; ++j)
      if (keep(rng)) {
        mask[std::size_t(r * words + j / 32)] |= 1u << (j % 32);
        ++kept;
      }
  std::copy(mask.begin(), mask.begin() + rows * words, mask.begin() + rows * words);  // both buffers
  CHECK(cudaMemcpyAsync(view.mask, mask.data(), mask.size() * 4, cudaMemcpyHostToDevice, stream));
  CHECK(cudaMemcpyAsync(view.row_visits, zeros.data(), zeros.size() * 4, cudaMemcpyHostToDevice, stream));
  CHECK(cudaStreamSynchronize(stream));
  return 1.0 - double(kept) / double(rows * nk);
}

// One point of a sparse series. `threshold` is set where the kernel wrote the mask itself.
struct SparsePoint {
  double target = 0, sparsity = 0, ms = 0;
  std::optional<float> threshold;
};

// Prints a point as a JSON object; time limits against the dense time of the same inputs timed
// alternately with the point (`dense_ms`, reported as paired_dense_ms).
void print_point(const SparsePoint& p, double flops, double dense_ms, bool first) {
  const double computed = 1.0 - p.sparsity;
  const double limit_ms = (computed + 0.03) * dense_ms;
  std::printf("%s{\"target\": %.3f, \"sparsity\": %.4f, ", first ? "" : ", ", p.target, p.sparsity);
  if (p.threshold) std::printf("\"threshold\": %.5g, ", double(*p.threshold));
  std::printf("\"ms\": %.4f, \"paired_dense_ms\": %.4f, \"tflops_on_computed\": %.2f, \"ideal_ms\": %.4f, \"limit_ms\": %.4f,"
              " \"meets_target\": %s}",
              p.ms, dense_ms, flops * computed / p.ms * 1e-9, computed * dense_ms, limit_ms, p.ms <= limit_ms ? "true" : "false");
}

// ---- workload masks ---------------------------------------------------------------------------

// The workload's frames x height x width for a sequence length L (tokens must equal L): the latent
// grids of the Wan presets (src/core/workload.cpp) where L is one of theirs, 8 x 32 x 32 (a short
// clip) for 8192, otherwise the largest frame count <= 21 dividing L and the most square
// height x width of the rest (1 x 1 x L for a prime L: valid, but not video-like).
liteattn::WorkloadConfig workload_config(std::int64_t L, std::int64_t H, std::int64_t D, int steps) {
  liteattn::WorkloadConfig c;
  c.heads = int(H);
  c.head_dim = int(D);
  c.steps = steps;
  auto grid = [&](std::int64_t f, std::int64_t h, std::int64_t w) { c.frames = int(f), c.height = int(h), c.width = int(w); };
  if (L == 32760) {
    grid(21, 30, 52);
  } else if (L == 75600) {
    grid(21, 45, 80);
  } else if (L == 8192) {
    grid(8, 32, 32);
  } else {
    std::int64_t f = 21;
    while (L % f) --f;
    const std::int64_t rest = L / f;
    std::int64_t h = std::int64_t(std::sqrt(double(rest)));
    while (rest % h) --h;
    grid(f, h, rest / h);
  }
  return c;
}

// Writes step `step` of the workload into q, k, v as bf16 (B, L, H, D), every batch the same
// sample, and returns the seconds the host generation took. generate() fills the three fp32
// arrays together (3 * L * H * D floats: 4.6 GB at L = 75600, H = 40); they live only inside
// this function, and the conversion runs on the device through one fp32 staging buffer.
double load_workload(const liteattn::VideoWorkload& workload, int step, std::int64_t batch, std::uint16_t* q, std::uint16_t* k,
                     std::uint16_t* v, cudaStream_t stream) {
  const auto& c = workload.config();
  const std::size_t n = std::size_t(c.tokens()) * c.heads * c.head_dim;
  const std::unique_ptr<float[]> hq(new float[n]), hk(new float[n]), hv(new float[n]);  // uninitialised on purpose
  const auto t0 = std::chrono::steady_clock::now();
  workload.generate(step, hq.get(), hk.get(), hv.get());
  const double generate_s = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  float* staging = nullptr;
  CHECK(cudaMalloc(&staging, n * 4));
  const std::pair<const float*, std::uint16_t*> tensors[] = {{hq.get(), q}, {hk.get(), k}, {hv.get(), v}};
  for (const auto& [host, device] : tensors) {
    // Same-stream order keeps the staging buffer from being overwritten before it is converted.
    CHECK(cudaMemcpyAsync(staging, host, n * 4, cudaMemcpyHostToDevice, stream));
    for (std::int64_t b = 0; b < batch; ++b) convert_f32_to_bf16<<<2048, 256, 0, stream>>>(staging, device + b * n, n);
    CHECK(cudaGetLastError());
  }
  CHECK(cudaStreamSynchronize(stream));
  CHECK(cudaFree(staging));
  std::fprintf(stderr, "workload %dx%dx%d, %d heads, step %d of %d (sigma %.3f): generated on the host in %.1f s, uploaded in %.1f s\n",
               c.frames, c.height, c.width, c.heads, step, c.steps, workload.sigma(step), generate_s, seconds_since(t1));
  return generate_s;
}

// The sparsity of the mask that `calls` calls at `threshold` write on these inputs from a freshly
// reset state (the first call visits every tile): 1 - kept / (rows * k_tiles) of what the next
// call reads. The state is left holding that mask.
//
// Why two calls by default, not one: under the running criterion a tile is skipped only when a
// tile visited before it in this call held a larger max, so every key tile visited before the
// row's max tile is kept, and with the alternate order that is up to half of a local head's row.
// The second call runs the other direction and skips those, as the calls of a real trajectory
// do; a third adds nothing on the same inputs. Written sparsity on the CPU reference, step 10 of
// 20, threshold -1/16 (about the most a threshold can skip), after one / two calls: 0.73 / 0.93
// on 21 x 30 x 52 tokens (heads 0, 6, 9, 11 of 12), 0.67 / 0.83 on 8 x 32 x 32 (heads 0, 10, 20,
// 30, 39 of 40), 0.30 / 0.59 / 0.59 after three on 8 x 16 x 16 with 8 heads. One call cannot
// reach the higher targets.
double written_sparsity(liteattn::AttentionArgs args, liteattn::SkipState& state, float threshold, int calls) {
  liteattn::reset_state(state.view(), args.stream);
  args.skip.enabled = true;
  args.skip.threshold = threshold;
  for (int c = 0; c < calls; ++c) liteattn::attention(args, state);
  CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(args.stream)));
  return state.stats().next_sparsity();
}

struct Probe {
  float threshold;
  double sparsity;
};

// Finds the threshold whose written mask comes closest to `target` sparsity. The search bisects
// u = log2(-threshold) over [kMinLog2, kMaxLog2] (thresholds -1/16 to -4096) because useful
// thresholds span decades: near 0 a row keeps little more than the tile of its max, while a
// global head of a large frame needs hundreds of log2 units before it skips anything. Sparsity
// falls as u grows. `probes` holds every probe on these inputs, earlier targets' included: they
// narrow the starting bracket, and the closest of them is returned. A target beyond what the
// inputs allow (the bracket shrinks onto an end of the range) ends the search early too.
template <class Measure>
Probe find_threshold(double target, std::vector<Probe>& probes, Measure&& sparsity_at) {
  constexpr double kMinLog2 = -4, kMaxLog2 = 12;
  constexpr int kMaxProbes = 10;
  constexpr double kTolerance = 0.005;   // |achieved - target| that ends the search early
  constexpr double kMinBracket = 0.02;   // in u: thresholds within ~1.4% of each other
  double lo = kMinLog2, hi = kMaxLog2;  // sparsity(lo) >= target > sparsity(hi), as far as known
  for (const Probe& p : probes) {
    const double u = std::log2(-double(p.threshold));
    if (p.sparsity >= target) lo = std::max(lo, u);
    else hi = std::min(hi, u);
  }
  auto closest = [&] {
    return *std::min_element(probes.begin(), probes.end(), [&](const Probe& a, const Probe& b) {
      return std::fabs(a.sparsity - target) < std::fabs(b.sparsity - target);
    });
  };
  for (int i = 0; i < kMaxProbes && hi - lo > kMinBracket && (probes.empty() || std::fabs(closest().sparsity - target) > kTolerance); ++i) {
    const double u = 0.5 * (lo + hi);
    const float threshold = -std::exp2(float(u));
    const double s = sparsity_at(threshold);
    probes.push_back({threshold, s});
    if (s >= target) lo = u;
    else hi = u;
  }
  return closest();
}

// Where the workload masks come from: step `step` of a `steps`-step trajectory, masks written by
// `calls` calls from a fresh state (see written_sparsity).
struct WorkloadOptions {
  int step = 10, steps = 20;  // the middle of the trajectory (noise weight sigma 0.83 at the shift of 5)
  int calls = 2;
};

// Sparse calls on masks the kernel writes on the video workload: the workload's inputs replace
// the random ones, then for each target sparsity the threshold is searched, the calls from a
// fresh state write the mask, and calls that read that mask are timed (each repeat restored to
// it). Prints the "workload" and "workload_sparse" JSON members; their time limits use a dense
// time measured on the same workload inputs.
void workload_series(Bench& bench, const liteattn::AttentionArgs& args, liteattn::SkipState& state, StateSnapshot& snapshot,
                     const Shape& s, std::int64_t D, const std::vector<double>& targets, double flops, const WorkloadOptions& options) {
  const liteattn::VideoWorkload workload(workload_config(s.L, s.H, D, options.steps));
  auto* q = static_cast<std::uint16_t*>(args.q.data);
  auto* k = static_cast<std::uint16_t*>(args.k.data);
  auto* v = static_cast<std::uint16_t*>(args.v.data);
  const double generate_s = load_workload(workload, options.step, s.B, q, k, v, bench.stream);

  liteattn::AttentionArgs dense = args;
  dense.skip.enabled = false;
  bench.warm_up(dense, 1.5);
  const double dense_ms = bench.time_calls([&] { liteattn::attention(dense); }, [] {});
  const auto& c = workload.config();
  std::printf(", \"workload\": {\"frames\": %d, \"height\": %d, \"width\": %d, \"step\": %d, \"steps\": %d, \"seed\": %lu,"
              " \"writing_calls\": %d, \"generate_s\": %.2f, \"dense_ms\": %.4f, \"dense_tflops\": %.2f}, \"workload_sparse\": [",
              c.frames, c.height, c.width, options.step, c.steps, (unsigned long)c.seed, options.calls, generate_s, dense_ms,
              flops / dense_ms * 1e-9);

  std::vector<Probe> probes;
  auto sparsity_at = [&](float threshold) { return written_sparsity(args, state, threshold, options.calls); };
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto search_t0 = std::chrono::steady_clock::now();
    const std::size_t probes_before = probes.size();
    const Probe best = find_threshold(targets[i], probes, sparsity_at);
    // Rewrite the chosen mask (the last probe need not be the best), keep it for every repeat.
    SparsePoint point{targets[i], sparsity_at(best.threshold), 0.0, best.threshold};
    snapshot.capture(state.view(), bench.stream);
    std::fprintf(stderr, "L=%ld H=%ld workload target %.2f: threshold %.4g writes sparsity %.4f (%zu probes, %.1f s)%s\n", s.L,
                 s.H, point.target, double(best.threshold), point.sparsity, probes.size() - probes_before, seconds_since(search_t0),
                 std::fabs(point.sparsity - point.target) > 0.02 ? ", far from the target (out of reach on these inputs, or a jump)" : "");
    liteattn::AttentionArgs sparse = args;
    sparse.skip.enabled = true;
    sparse.skip.threshold = best.threshold;  // the timed call votes as the next step at this threshold would
    const auto timed = bench.time_against_dense([&] { liteattn::attention(sparse, state); },
                                                [&] { snapshot.restore(state.view(), bench.stream); }, [&] { liteattn::attention(dense); });
    point.ms = timed.ms;
    print_point(point, flops, timed.dense_ms, i == 0);
  }
  std::printf("]");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Shape> shapes = {{1, 32760, 40}, {1, 32760, 12}, {1, 75600, 40}, {1, 8192, 40}};
  std::vector<double> sparsities = {0.25, 0.5, 0.75, 0.9};
  std::int64_t D = 128;
  int repeats = 7;
  bool with_workload = true;
  WorkloadOptions workload;
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
    } else if (flag == "--workload") {
      with_workload = std::atoi(value.c_str()) != 0;
    } else if (flag == "--workload-step") {
      workload.step = std::atoi(value.c_str());
    } else if (flag == "--workload-steps") {
      workload.steps = std::atoi(value.c_str());
    } else if (flag == "--workload-calls") {
      workload.calls = std::max(1, std::atoi(value.c_str()));
    }
  }

  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  Bench bench{stream, {}, repeats};
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

    // Dense: skipping disabled. Warm up for ~1.5 s first so the clocks settle before timing.
    args.skip.enabled = false;
    bench.warm_up(args, 1.5);
    const double dense_ms = bench.time_calls([&] { liteattn::attention(args); }, [] {});

    // Host overhead: wall time of the call itself (launch, TMA descriptors), no sync inside, each
    // call right after a stream sync that waited for a call of this shape. The baseline: an empty
    // kernel's launch timed the same way, which shows what the host's wake-up from a long wait
    // costs any launch.
    double host_us = 0, host_enqueue_us = 0, launch_after_sync_us = 0;
    {
      std::vector<double> us, baseline_us;
      BigParams bp{};
      for (int r = 0; r < 40; ++r) {
        liteattn::attention(args);
        CHECK(cudaStreamSynchronize(stream));
        const auto t0 = std::chrono::steady_clock::now();
        if (r % 2 == 0) {
          liteattn::attention(args);
        } else {
          empty_kernel<<<1, 32, 0, stream>>>(bp);
        }
        const auto t1 = std::chrono::steady_clock::now();
        (r % 2 == 0 ? us : baseline_us).push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        CHECK(cudaStreamSynchronize(stream));
      }
      host_us = median(us);
      launch_after_sync_us = median(baseline_us);
      // Back to back: calls enqueued without syncs in between, so the CPU is not waking up from
      // a stream sync at each call; this is how a model's layers call it. The median of the
      // per-call times: one call that the OS preempts must not stand for all of them.
      host_enqueue_us = median_us([&] { liteattn::attention(args); }, 30);
      CHECK(cudaStreamSynchronize(stream));
      const double validate_us = median_us([&] { liteattn::validate(args); }, 20);
      std::fprintf(stderr, "L=%ld H=%ld: attention() host time %.1f us, of which validate %.1f us; empty launch after the same wait %.1f us\n",
                   s.L, s.H, host_us, validate_us, launch_after_sync_us);
    }

    // Detection on, nothing skipped: threshold -inf keeps every tile but runs every vote.
    args.skip.enabled = true;
    args.skip.threshold = -INFINITY;
    state.prepare(liteattn::state_key(args), stream);
    const auto& view = state.view();
    const auto key = view.key;
    liteattn::AttentionArgs dense_args = args;
    dense_args.skip.enabled = false;
    auto dense_call = [&] { liteattn::attention(dense_args); };
    const auto detect = bench.time_against_dense([&] { liteattn::attention(args, state); },
                                                 [&] { liteattn::reset_state(view, stream); }, dense_call);
    const double detect_ms = detect.ms;

    // Sparse: random masks written into the read buffer (row_visits 0 -> buffer 0), timed at
    // threshold -inf as above.
    std::printf("  {\"B\": %ld, \"L\": %ld, \"H\": %ld, \"flops\": %.6e, \"dense_ms\": %.4f, \"dense_tflops\": %.2f,"
                " \"detect_ms\": %.4f, \"detect_tflops\": %.2f, \"detect_overhead\": %.4f, \"detect_paired_dense_ms\": %.4f,"
                " \"host_overhead_us\": %.2f, \"launch_after_sync_us\": %.2f,"
                " \"host_enqueue_us\": %.2f,"
                " \"state_bytes\": %zu, \"sparse\": [",
                s.B, s.L, s.H, flops, dense_ms, flops / dense_ms * 1e-9, detect_ms, flops / detect_ms * 1e-9,
                detect_ms / detect.dense_ms - 1.0, detect.dense_ms, host_us, launch_after_sync_us, host_enqueue_us,
                key.total_bytes());
    StateSnapshot snapshot(key);
    std::mt19937_64 rng(42);
    for (std::size_t pi = 0; pi < sparsities.size(); ++pi) {
      SparsePoint point{sparsities[pi], write_random_mask(view, sparsities[pi], rng, stream), 0.0, std::nullopt};
      snapshot.capture(view, stream);
      const auto timed = bench.time_against_dense([&] { liteattn::attention(args, state); }, [&] { snapshot.restore(view, stream); },
                                                  dense_call);
      point.ms = timed.ms;
      print_point(point, flops, timed.dense_ms, pi == 0);
    }
    std::printf("]");

    // Sparse on masks the kernel writes on the video workload (replaces the random inputs).
    if (with_workload) workload_series(bench, args, state, snapshot, s, D, sparsities, flops, workload);
    std::printf("}%s\n", si + 1 < shapes.size() ? "," : "");
    std::fflush(stdout);
    CHECK(cudaFree(q));
    CHECK(cudaFree(k));
    CHECK(cudaFree(v));
    CHECK(cudaFree(o));
  }
  std::printf("]}\n");
  return 0;
}
