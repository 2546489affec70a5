// GPU tests of one GPU backend: the Hopper kernel (--backend=sm90) or the portable kernel
// (--backend=sm80; on a Hopper GPU it runs as the fallback). Every check compares the kernel with
// references computed on the host from the same rounded inputs:
// - out / lse against a dense fp64 attention restricted to the tiles the call visits (the read
//   mask, must_do / must_skip, dense query tiles), bf16/fp16 rel L2 <= 1e-2, lse abs <= 1e-3;
// - the written mask against an fp64 recomputation of the votes (tests/cpp/reference_helpers)
//   and against the CPU reference backend run on the same read mask, both up to bits whose
//   decision margin is below 1e-3 (method.md section 8);
// - kept counts, poisoned outputs, determinism, bad inputs.
// Without a GPU that runs the backend the program prints "skipped: ..." and exits with 77
// (ctest SKIP_RETURN_CODE).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/backends.hpp"
#include "cuda/runtime.hpp"
#include "liteattn/liteattn.hpp"
#include "reference_helpers.hpp"

namespace {

using namespace lt;
using liteattn::AttentionArgs;
using liteattn::Criterion;
using liteattn::SkipState;
using liteattn::TensorView;
using liteattn::TokenRange;
using liteattn::VisitOrder;

constexpr double kOutTolerance = 1e-2;  // rel L2, bf16 and fp16
constexpr double kLseTolerance = 1e-3;  // abs
constexpr float kNoThreshold = -std::numeric_limits<float>::infinity();

#define CUDA_OK(expr)                                                                        \
  do {                                                                                       \
    cudaError_t e_ = (expr);                                                                 \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#expr) + ": " + cudaGetErrorString(e_)); \
  } while (0)

// Owning device memory on the GPU that was current when it was allocated.
struct DeviceBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  int device = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) : bytes(n) {
    CUDA_OK(cudaGetDevice(&device));
    CUDA_OK(cudaMalloc(&ptr, std::max<std::size_t>(n, 16)));
  }
  ~DeviceBuffer() {
    if (!ptr) return;
    int current = 0;  // not DeviceGuard: it throws, and a destructor must not
    cudaGetDevice(&current);
    cudaSetDevice(device);
    cudaFree(ptr);
    cudaSetDevice(current);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr(o.ptr), bytes(o.bytes), device(o.device) { o.ptr = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr, o.ptr);
    std::swap(bytes, o.bytes);
    std::swap(device, o.device);
    return *this;
  }
};

constexpr liteattn::Device kGpu{liteattn::DeviceKind::cuda, 0};

// The backend under test (main() sets it from --backend); every GPU call names it explicitly.
liteattn::Backend g_backend = liteattn::Backend::sm90;
bool testing_hopper() { return g_backend == liteattn::Backend::sm90; }

// A copy of a host tensor on GPU `device` with the same strides, starting `offset` bytes into the
// buffer (an offset that is not a multiple of 16 gives a tensor the kernels cannot read or write
// in 16-byte chunks).
TensorView upload(const HostTensor& t, DeviceBuffer& buffer, std::size_t offset = 0, int device = 0) {
  liteattn::cuda::DeviceGuard on(device);
  buffer = DeviceBuffer(offset + t.bytes().size());
  TensorView v = t.view();
  v.data = static_cast<std::uint8_t*>(buffer.ptr) + offset;
  v.device = liteattn::Device{liteattn::DeviceKind::cuda, device};
  CUDA_OK(cudaMemcpy(v.data, t.bytes().data(), t.bytes().size(), cudaMemcpyHostToDevice));
  return v;
}

void download(HostTensor& t, const DeviceBuffer& buffer, std::size_t offset = 0) {
  CUDA_OK(cudaMemcpy(t.view().data, static_cast<const std::uint8_t*>(buffer.ptr) + offset, t.bytes().size(), cudaMemcpyDeviceToHost));
}

// Copies of a problem's q, k, v and out (and lse when asked for) on GPU `device`, with the call
// arguments that point at them: the set-up the single-problem tests share.
struct DeviceProblem {
  int device;
  DeviceBuffer q, k, v, out, lse;
  AttentionArgs args;
  DeviceProblem(const Problem& p, bool with_lse, int device_ = 0) : device(device_), args(p.args(with_lse)) {
    args.backend = g_backend;
    args.q = upload(p.q, q, 0, device);
    args.k = upload(p.k, k, 0, device);
    args.v = upload(p.v, v, 0, device);
    args.out = upload(p.out, out, 0, device);
    if (with_lse) {
      liteattn::cuda::DeviceGuard on(device);
      lse = DeviceBuffer(std::size_t(p.B * p.H * p.Lq) * 4);
      args.lse.data = lse.ptr;
      args.lse.device = args.q.device;
    }
  }
  // The bytes of a buffer, copied to the host once its GPU is idle.
  std::vector<std::uint8_t> bytes_of(const DeviceBuffer& buffer) const {
    liteattn::cuda::DeviceGuard on(device);
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<std::uint8_t> bytes(buffer.bytes);
    CUDA_OK(cudaMemcpy(bytes.data(), buffer.ptr, buffer.bytes, cudaMemcpyDeviceToHost));
    return bytes;
  }
  std::vector<std::uint8_t> out_bytes() const { return bytes_of(out); }
  // Skipping calls at threshold -6 in the alternating visit order: the set-up of the tests that
  // repeat a trajectory (determinism, graph replay).
  void skip_alternating() {
    args.skip.enabled = true;
    args.skip.threshold = -6.0f;
    args.skip.order = VisitOrder::alternate;
  }
};

enum class Layout { contiguous, padded, packed_qkv };

struct Config {
  int id = 0;
  i64 B = 1, Lq = 128, Lk = 128, H = 1, Hkv = 1, D = 128;
  DType dtype = DType::bf16;
  Layout layout = Layout::contiguous;
  int steps = 3;
  float threshold = -10.0f;
  Criterion criterion = Criterion::running;
  VisitOrder order = VisitOrder::descending;
  double locality = 0.0;
  std::vector<TokenRange> must_do, must_skip, dense_queries;
  std::uint64_t seed = 1;
  // Odd steps run on the Hopper kernel instead of the backend under test: a state written by one
  // kernel must be read correctly by the other (same tile shapes, method.md section 1).
  bool alternate_with_hopper = false;
  // Leave the backend unset, as users do: the library picks it by the GPU and the shape.
  bool automatic_backend = false;
  // Applied to the random inputs last (non-finite values); empty = none.
  std::function<void(Problem&)> corrupt;

  std::string describe() const {
    std::ostringstream s;
    s << "config " << id << ": B=" << B << " Lq=" << Lq << " Lk=" << Lk << " H=" << H << " Hkv=" << Hkv << " D=" << D
      << " " << liteattn::to_string(dtype) << " layout=" << int(layout) << " thr=" << threshold
      << " crit=" << liteattn::to_string(criterion) << " order=" << liteattn::to_string(order) << " a=" << locality
      << " must_do=" << must_do.size() << " must_skip=" << must_skip.size() << " dense_q=" << dense_queries.size()
      << (corrupt ? " non-finite inputs" : "");
    return s.str();
  }
};

Order order_for_call(VisitOrder order, std::uint32_t visits) {
  switch (order) {
    case VisitOrder::descending: return Order::descending;
    case VisitOrder::alternate: return (visits & 1u) ? Order::ascending : Order::descending;
    case VisitOrder::diagonal_first: return Order::diagonal;
  }
  return Order::descending;
}

// Out against the fp64 reference. A row that is NaN in the reference (NaN inputs) must be NaN in
// the kernel's output too and stays out of the norm; the other rows give the rel L2 error.
struct OutCheck {
  i64 nan_rows_differ = 0;
  double rel_l2 = 0.0;
};
OutCheck check_out(const HostTensor& out, const Reference& ref) {
  OutCheck c;
  std::vector<double> got, want;
  for (i64 b = 0; b < ref.B; ++b)
    for (i64 l = 0; l < ref.Lq; ++l)
      for (i64 h = 0; h < ref.H; ++h) {
        bool ref_nan = false, out_nan = false;
        for (i64 d = 0; d < ref.D; ++d) {
          ref_nan |= std::isnan(ref.out_at(b, l, h, d));
          out_nan |= std::isnan(out.get(b, l, h, d));
        }
        c.nan_rows_differ += ref_nan != out_nan;
        if (ref_nan || out_nan) continue;
        for (i64 d = 0; d < ref.D; ++d) {
          got.push_back(out.get(b, l, h, d));
          want.push_back(ref.out_at(b, l, h, d));
        }
      }
  c.rel_l2 = rel_l2(got, want);
  return c;
}

// lse must be within 1e-3 of the fp64 reference, plus the rounding that fp32 accumulation of
// the raw q.k products can add: with strongly local inputs the logits are differences of large
// terms (|q_d k_d| up to 1e4), and any fp32 kernel (the CPU reference too) loses absolute
// accuracy there. The bound per row: 2e-6 * scale * sum_d |q_d| * max |k| of its KV head.
struct LseCheck {
  i64 violations = 0;
  double worst = 0.0, worst_tolerance = 0.0;
};
LseCheck check_lse(const std::vector<float>& lse, const Reference& ref, const Problem& p, double scale) {
  LseCheck c;
  std::vector<double> kmax(std::size_t(p.B * p.Hkv), 0.0);
  for (i64 b = 0; b < p.B; ++b)
    for (i64 l = 0; l < p.Lk; ++l)
      for (i64 h = 0; h < p.Hkv; ++h)
        for (i64 d = 0; d < p.D; ++d)
          kmax[std::size_t(b * p.Hkv + h)] = std::max(kmax[std::size_t(b * p.Hkv + h)], double(std::abs(p.k.get(b, l, h, d))));
  for (i64 b = 0; b < p.B; ++b)
    for (i64 h = 0; h < p.H; ++h)
      for (i64 l = 0; l < p.Lq; ++l) {
        double q1 = 0.0;
        for (i64 d = 0; d < p.D; ++d) q1 += std::abs(p.q.get(b, l, h, d));
        const double tolerance = kLseTolerance + 2e-6 * scale * q1 * kmax[std::size_t(b * p.Hkv + h / (p.H / p.Hkv))];
        const std::size_t i = std::size_t((b * p.H + h) * p.Lq + l);
        const double a = lse[i], r = ref.lse[i];
        if (std::isinf(a) && std::isinf(r) && (a < 0) == (r < 0)) continue;
        if (std::isnan(a) && std::isnan(r)) continue;  // NaN inputs: NaN in both
        const double e = std::abs(a - r);
        if (!(e <= tolerance)) {
          ++c.violations;
          if (!(e <= c.worst)) {
            c.worst = std::isnan(e) ? std::numeric_limits<double>::infinity() : e;
            c.worst_tolerance = tolerance;
          }
        }
      }
  return c;
}

double max_abs_lse_error(const std::vector<float>& lse, const Reference& ref) {
  double worst = 0.0;
  for (std::size_t i = 0; i < lse.size(); ++i) {
    const double a = lse[i], b = ref.lse[i];
    if (std::isinf(a) && std::isinf(b) && (a < 0) == (b < 0)) continue;
    const double e = std::abs(a - b);
    if (!(e <= worst)) worst = std::isnan(e) ? std::numeric_limits<double>::infinity() : e;
  }
  return worst;
}

// Writes `mask` (rows * words, per row) into the buffer that each row of a CPU state reads next,
// and `row_max` into its stored maxima, so the CPU reference runs on the GPU's read state.
void load_cpu_state(SkipState& state, const std::vector<std::uint32_t>& mask, const std::vector<float>& row_max) {
  const auto& v = state.view();
  const i64 rows = v.key.rows(), words = v.key.words_per_row();
  for (i64 r = 0; r < rows; ++r) {
    const std::uint32_t buffer = v.row_visits[r] & 1u;
    std::memcpy(v.mask + (buffer * rows + r) * words, &mask[std::size_t(r * words)], std::size_t(words) * 4);
  }
  if (v.row_max && !row_max.empty()) std::memcpy(v.row_max, row_max.data(), row_max.size() * 4);
}

// Runs one configuration for cfg.steps consecutive calls; returns the failures (empty = pass).
std::vector<std::string> run_config(const Config& cfg) {
  std::vector<std::string> failures;
  auto fail = [&](const std::string& what) { failures.push_back(cfg.describe() + ": " + what); };

  const i64 pad = cfg.layout == Layout::padded ? 24 : 0;  // 48 bytes: strided, still TMA-aligned
  Problem p(cfg.B, cfg.Lq, cfg.Lk, cfg.H, cfg.Hkv, cfg.D, cfg.dtype, pad);
  p.randomize(cfg.seed);
  if (cfg.locality > 0) {
    // Keep |k_1| = D^(1/4) a y^2 <= 1e4 (y up to (Lk - 1) / 2): finite in fp16, and logits that
    // fp32 can still resolve.
    const double centre = 0.5 * double(cfg.Lk - 1);
    const double cap = centre >= 1.0 ? 1e4 / (std::pow(double(cfg.D), 0.25) * centre * centre) : cfg.locality;
    p.add_locality(std::min(cfg.locality, cap));
  }
  if (cfg.corrupt) cfg.corrupt(p);
  const liteattn::TileShape tile = liteattn::tile_shape(g_backend, cfg.D, cfg.dtype);
  const double scale = default_scale(cfg.D);
  const MaskGeometry g(cfg.B, cfg.H, cfg.Lq, cfg.Lk, tile);

  // Device inputs.
  DeviceBuffer dq, dk, dv, dqkv, dout, dlse;
  AttentionArgs gargs = p.args(true);
  if (cfg.layout == Layout::packed_qkv) {
    // One (B, L, 3, H, D) buffer; q, k, v are slices of it (Lq == Lk, H == Hkv).
    const i64 L = cfg.Lq, H = cfg.H, D = cfg.D, es = 2;
    std::vector<std::uint8_t> packed(std::size_t(cfg.B * L * 3 * H * D * es));
    const HostTensor* parts[3] = {&p.q, &p.k, &p.v};
    for (int part = 0; part < 3; ++part) {
      const TensorView src = parts[part]->view();
      for (i64 b = 0; b < cfg.B; ++b)
        for (i64 l = 0; l < L; ++l)
          for (i64 h = 0; h < H; ++h)
            std::memcpy(&packed[std::size_t((((b * L + l) * 3 + part) * H + h) * D * es)],
                        static_cast<const std::uint8_t*>(src.data) + (b * src.stride[0] + l * src.stride[1] + h * src.stride[2]) * es,
                        std::size_t(D * es));
    }
    dqkv = DeviceBuffer(packed.size());
    CUDA_OK(cudaMemcpy(dqkv.ptr, packed.data(), packed.size(), cudaMemcpyHostToDevice));
    TensorView* views[3] = {&gargs.q, &gargs.k, &gargs.v};
    for (int part = 0; part < 3; ++part) {
      TensorView& t = *views[part];
      t.data = static_cast<std::uint8_t*>(dqkv.ptr) + part * H * D * es;
      t.device = kGpu;
      t.stride = {L * 3 * H * D, 3 * H * D, D, 1};
    }
  } else {
    gargs.q = upload(p.q, dq);
    gargs.k = upload(p.k, dk);
    gargs.v = upload(p.v, dv);
  }
  // With the packed layout, out also starts 8 bytes past a 16-byte boundary: the kernel's
  // epilogue then takes its 4-byte store path instead of the 16-byte staged one.
  const std::size_t out_shift = cfg.layout == Layout::packed_qkv ? 8 : 0;
  gargs.out = upload(p.out, dout, out_shift);
  dlse = DeviceBuffer(std::size_t(cfg.B * cfg.H * cfg.Lq) * 4);
  gargs.lse = p.lse.view();
  gargs.lse.data = dlse.ptr;
  gargs.lse.device = kGpu;
  if (!cfg.automatic_backend) gargs.backend = g_backend;
  gargs.skip.enabled = true;
  gargs.skip.threshold = cfg.threshold;
  gargs.skip.criterion = cfg.criterion;
  gargs.skip.order = cfg.order;
  gargs.must_do = cfg.must_do;
  gargs.must_skip = cfg.must_skip;
  gargs.dense_queries = cfg.dense_queries;

  // The CPU reference backend on host copies, with the kernel's tile shape.
  Problem pc = p;
  AttentionArgs cargs = pc.args(true);
  cargs.skip = gargs.skip;
  cargs.must_do = cfg.must_do;
  cargs.must_skip = cfg.must_skip;
  cargs.dense_queries = cfg.dense_queries;
  cargs.cpu_tile = tile;
  cargs.cpu_threads = 1;  // configurations already run in parallel

  SkipState gstate, cstate;
  gstate.prepare(liteattn::state_key(gargs));
  cstate.prepare(liteattn::state_key(cargs));

  std::vector<float> lse(std::size_t(cfg.B * cfg.H * cfg.Lq));
  // The view's optional running totals of the kept counts: the kernel adds to them every call.
  DeviceBuffer dcumulative(std::size_t(cfg.B * cfg.H) * 8);
  CUDA_OK(cudaMemset(dcumulative.ptr, 0, dcumulative.bytes));
  std::vector<std::int64_t> expected_totals(std::size_t(cfg.B * cfg.H), 0), totals(expected_totals.size());
  for (int step = 0; step < cfg.steps; ++step) {
    const auto read = gstate.read_mask();
    const auto stored = gstate.row_max();
    const std::uint32_t visits = gstate.row_visits().empty() ? 0u : gstate.row_visits()[0];

    // Poison the outputs: every element the kernel must write starts as NaN.
    CUDA_OK(cudaMemset(dout.ptr, 0xff, dout.bytes));
    CUDA_OK(cudaMemset(dlse.ptr, 0xff, dlse.bytes));
    AttentionArgs with_totals = gargs;  // gstate is prepared for this key (above)
    if (cfg.alternate_with_hopper && step % 2 == 1) with_totals.backend = liteattn::Backend::sm90;
    const liteattn::Backend served = liteattn::select_backend(with_totals);
    try {
      with_totals.state = gstate.view();
      with_totals.state.cumulative = static_cast<std::int64_t*>(dcumulative.ptr);
      liteattn::attention(with_totals);
      CUDA_OK(cudaDeviceSynchronize());
    } catch (const std::exception& e) {
      fail(std::string("step ") + std::to_string(step) + " threw: " + e.what());
      return failures;
    }
    download(p.out, dout, out_shift);
    CUDA_OK(cudaMemcpy(lse.data(), dlse.ptr, dlse.bytes, cudaMemcpyDeviceToHost));
    const auto written = gstate.read_mask();
    const std::string at = "step " + std::to_string(step) + ": ";

    // The fp64 recomputation of this call's decisions.
    VoteCall call;
    call.tile = tile;
    call.scale = scale;
    call.threshold = cfg.threshold;
    call.previous = cfg.criterion == Criterion::previous;
    call.order = order_for_call(cfg.order, visits);
    call.read_mask = read;
    call.stored_row_max = stored;
    call.must_do = cfg.must_do;
    call.must_skip = cfg.must_skip;
    call.dense_queries = cfg.dense_queries;
    const VoteResult expected = expected_votes(p, call);
    const i64 bad_bits = certain_mismatches(written, expected, g);
    if (bad_bits != 0) fail(at + std::to_string(bad_bits) + " written-mask bits differ from the fp64 votes");

    // Output and lse against dense fp64 attention over the visited tiles.
    const Reference ref = reference_attention(p, scale, tile, visited_tiles(expected, g));
    const OutCheck out_check = check_out(p.out, ref);
    if (!(out_check.rel_l2 <= kOutTolerance)) fail(at + "out rel L2 " + std::to_string(out_check.rel_l2));
    if (out_check.nan_rows_differ != 0)
      fail(at + std::to_string(out_check.nan_rows_differ) + " output rows are NaN on one side only (kernel vs fp64)");
    const LseCheck lse_check = check_lse(lse, ref, p, scale);
    if (lse_check.violations != 0)
      fail(at + std::to_string(lse_check.violations) + " lse values off; worst abs error " + std::to_string(lse_check.worst) +
           " (tolerance " + std::to_string(lse_check.worst_tolerance) + ")");

    // kept = tiles computed per (b, h); the totals grow by as much.
    const auto stats = gstate.stats();
    CUDA_OK(cudaMemcpy(totals.data(), dcumulative.ptr, dcumulative.bytes, cudaMemcpyDeviceToHost));
    for (i64 h = 0; h < cfg.H; ++h) {
      i64 visited = 0;
      for (i64 b = 0; b < cfg.B; ++b) {
        i64 visited_bh = 0;
        for (i64 i = 0; i < g.nq; ++i)
          for (i64 j = 0; j < g.nk; ++j) visited_bh += expected.visited[std::size_t(g.row(b, h, i) * g.nk + j)];
        visited += visited_bh;
        const std::size_t bh = std::size_t(b * cfg.H + h);
        expected_totals[bh] += visited_bh;
        if (totals[bh] != expected_totals[bh])
          fail(at + "cumulative of (b " + std::to_string(b) + ", h " + std::to_string(h) + ") is " +
               std::to_string(totals[bh]) + ", expected " + std::to_string(expected_totals[bh]));
      }
      if (stats.computed_per_head[std::size_t(h)] != visited)
        fail(at + "kept of head " + std::to_string(h) + " is " + std::to_string(stats.computed_per_head[std::size_t(h)]) +
             ", expected " + std::to_string(visited));
    }

    // The Hopper kernel's CTA b runs work tile b (position b) first; then the CTAs take positions
    // from the call's counter, which the order kernel set past the first round, until each gets one
    // past the end. So the counter ends at exactly the number of work tiles plus the grid, min(work
    // tiles, SMs) (with the kept counts above and the outputs, this shows each work tile ran once).
    // The portable kernel runs one CTA per work tile and has no counter.
    if (served == liteattn::Backend::sm90) {
      const auto& key = gstate.key();
      std::uint32_t work_counter = 0;
      CUDA_OK(cudaMemcpy(&work_counter, gstate.view().kept + key.work_counter_offset(), 4, cudaMemcpyDeviceToHost));
      int device = 0, sms = 0;
      CUDA_OK(cudaGetDevice(&device));
      CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
      const i64 work_tiles = key.rows();
      const i64 expected_counter = work_tiles + std::min<i64>(work_tiles, sms);
      if (i64(work_counter) != expected_counter)
        fail(at + "work-tile counter ends at " + std::to_string(work_counter) + ", expected " +
             std::to_string(expected_counter));
      // The positions it handed out ran the work order, a permutation of the work tiles
      // (its rules: test_work_order.cpp).
      std::vector<std::uint32_t> order(static_cast<std::size_t>(work_tiles));
      CUDA_OK(cudaMemcpy(order.data(), gstate.view().kept + key.work_order_offset(), order.size() * 4, cudaMemcpyDeviceToHost));
      std::sort(order.begin(), order.end());
      for (std::size_t r = 0; r < order.size(); ++r)
        if (order[r] != r) {
          fail(at + "the work order is not a permutation of the work tiles");
          break;
        }
    }

    // The CPU reference backend on the same read state writes the same mask (up to margins).
    load_cpu_state(cstate, read, stored);
    liteattn::attention(cargs, cstate);
    const auto cpu_written = cstate.read_mask();
    const i64 cpu_bad = certain_mismatches(cpu_written, expected, g);
    i64 gpu_vs_cpu = 0;
    for (i64 row = 0; row < g.B * g.H * g.nq; ++row)
      for (i64 j = 0; j < g.nk; ++j) {
        const std::size_t w = std::size_t(row * g.words + j / 32);
        const bool a = (written[w] >> (j % 32)) & 1u, c = (cpu_written[w] >> (j % 32)) & 1u;
        if (a != c && !expected.uncertain[std::size_t(row * g.nk + j)]) ++gpu_vs_cpu;
      }
    if (gpu_vs_cpu != 0) fail(at + std::to_string(gpu_vs_cpu) + " written-mask bits differ from the CPU reference");
    // The `previous` criterion's stored maxima: NaN (a row that saw a NaN score) on both or neither.
    const auto gpu_max = gstate.row_max(), cpu_max = cstate.row_max();
    i64 max_nan_differ = 0;
    for (std::size_t r = 0; r < std::min(gpu_max.size(), cpu_max.size()); ++r)
      max_nan_differ += std::isnan(gpu_max[r]) != std::isnan(cpu_max[r]);
    if (max_nan_differ != 0) fail(at + std::to_string(max_nan_differ) + " stored row maxima are NaN on one side only");
    if (cpu_bad != 0) fail(at + "(CPU reference itself differs from the fp64 votes in " + std::to_string(cpu_bad) + " bits)");
    if (!failures.empty()) return failures;
  }
  return failures;
}

std::vector<TokenRange> random_ranges(std::mt19937_64& rng, i64 length, int max_count) {
  std::vector<TokenRange> ranges;
  const int count = int(rng() % (max_count + 1));
  i64 position = 0;
  for (int r = 0; r < count && position < length; ++r) {
    const i64 begin = position + i64(rng() % std::uint64_t(std::max<i64>(1, length / 4)));
    if (begin >= length) break;
    const i64 end = std::min(length, begin + 1 + i64(rng() % std::uint64_t(std::max<i64>(1, length / 3))));
    ranges.push_back({begin, end});
    position = end + 1;
  }
  return ranges;
}

// The random configurations: the lengths the issue names, both dtypes and head dims, GQA,
// strided and packed views, every order and criterion, ranges; sized so that the fp64 host
// references stay affordable.
std::vector<Config> make_configs(int count, std::uint64_t seed) {
  const i64 lengths[] = {1, 127, 128, 129, 1000, 4097, 32760, 200, 333, 513, 768};
  std::mt19937_64 rng(seed);
  std::vector<Config> configs;
  for (int id = 0; configs.size() < std::size_t(count); ++id) {
    Config c;
    c.id = id;
    c.seed = rng();
    c.D = (rng() % 2) ? 128 : 64;
    c.dtype = (rng() % 2) ? DType::bf16 : DType::f16;
    c.Lq = lengths[rng() % std::size(lengths)];
    c.Lk = (rng() % 3 == 0) ? c.Lq : lengths[rng() % std::size(lengths)];
    const int head_choice = int(rng() % 4);
    c.Hkv = head_choice == 3 ? 2 : 1;
    c.H = c.Hkv * ((head_choice >= 2) ? 2 : 1);
    c.B = (rng() % 4 == 0) ? 2 : 1;
    const double work = double(c.B * c.H) * double(c.Lq) * double(c.Lk) * double(c.D);
    if (work > 4e9) continue;  // keep the host references fast
    const int layout = int(rng() % 3);
    c.layout = layout == 2 && c.Lq == c.Lk && c.H == c.Hkv ? Layout::packed_qkv
               : layout >= 1                              ? Layout::padded
                                                          : Layout::contiguous;
    const float thresholds[] = {-10.0f, -6.0f, -3.0f, -1.0f, kNoThreshold};
    c.threshold = thresholds[rng() % std::size(thresholds)];
    c.criterion = (rng() % 3 == 0) ? Criterion::previous : Criterion::running;
    const VisitOrder orders[] = {VisitOrder::descending, VisitOrder::alternate, VisitOrder::diagonal_first};
    c.order = orders[rng() % 3];
    c.locality = (rng() % 4 == 0) ? 0.0 : 0.02 * double(1 + rng() % 10);
    if (rng() % 5 == 0) c.must_do = random_ranges(rng, c.Lk, 2);
    if (rng() % 5 == 0) {
      c.must_skip = random_ranges(rng, c.Lk, 2);
      // must_skip may not overlap must_do: drop the overlapping ones.
      std::vector<TokenRange> kept;
      for (const auto& s : c.must_skip) {
        bool overlap = false;
        for (const auto& d : c.must_do) overlap |= s.begin < d.end && d.begin < s.end;
        if (!overlap) kept.push_back(s);
      }
      c.must_skip = kept;
    }
    if (rng() % 6 == 0) c.dense_queries = random_ranges(rng, c.Lq, 1);
    c.steps = 3;
    configs.push_back(c);
  }
  return configs;
}


TEST(GpuBackend, RandomConfigurationsMatchReferences) {
  const auto configs = make_configs(96, 20261127);
  std::vector<std::vector<std::string>> results(configs.size());
  std::atomic<std::size_t> next{0};
  const unsigned workers = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < workers; ++w)
    pool.emplace_back([&] {
      CUDA_OK(cudaSetDevice(0));
      for (std::size_t i = next++; i < configs.size(); i = next++) {
        try {
          results[i] = run_config(configs[i]);
        } catch (const std::exception& e) {
          results[i] = {configs[i].describe() + ": exception " + e.what()};
        }
      }
    });
  for (auto& t : pool) t.join();
  int failed = 0;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    for (const auto& f : results[i]) ADD_FAILURE() << f;
    failed += !results[i].empty();
  }
  std::printf("random configurations: %zu run, %d failed\n", configs.size(), failed);
}

// A few small configurations, single-threaded: the case that scripts/gpu_check.sh runs under
// compute-sanitizer (memcheck, racecheck).
TEST(GpuBackend, Small) {
  std::vector<Config> configs;
  for (int variant = 0; variant < 4; ++variant) {
    Config c;
    c.id = 1000 + variant;
    c.Lq = 300;
    c.Lk = 260;
    c.H = 2;
    c.Hkv = variant == 3 ? 1 : 2;
    c.D = variant % 2 ? 64 : 128;
    c.dtype = variant < 2 ? DType::bf16 : DType::f16;
    c.layout = variant == 1 ? Layout::padded : Layout::contiguous;
    c.threshold = -3.0f;
    c.locality = 0.2;
    c.order = variant == 2 ? VisitOrder::diagonal_first : VisitOrder::alternate;
    c.criterion = variant == 3 ? Criterion::previous : Criterion::running;
    c.steps = 2;
    c.seed = 99 + variant;
    configs.push_back(c);
  }
  for (const auto& c : configs)
    for (const auto& f : run_config(c)) ADD_FAILURE() << f;
}

// The portable kernel continues a trajectory the Hopper kernel started and vice versa: every
// step is checked against the references on the state the other kernel wrote.
TEST(GpuBackend, StateCarriesAcrossBackends) {
  const auto available = liteattn::available_backends();
  if (testing_hopper() || std::find(available.begin(), available.end(), liteattn::Backend::sm90) == available.end())
    GTEST_SKIP() << "needs the portable kernel under test on a Hopper GPU";
  for (int variant = 0; variant < 4; ++variant) {
    Config c;
    c.id = 3000 + variant;
    c.Lq = 700;
    c.Lk = 900;
    c.H = 2;
    c.Hkv = 2;
    c.D = variant % 2 ? 64 : 128;
    c.dtype = variant < 2 ? DType::bf16 : DType::f16;
    c.threshold = -4.0f;
    c.locality = 0.1;
    c.order = VisitOrder::alternate;
    c.criterion = variant == 3 ? Criterion::previous : Criterion::running;
    c.steps = 4;
    c.seed = 300 + variant;
    c.alternate_with_hopper = true;
    for (const auto& f : run_config(c)) ADD_FAILURE() << f;
  }
}

// On a Hopper GPU, a shape beyond the Hopper kernel's limits (more than 2048 key tiles) runs on
// the portable kernel when no backend is named, with the same contract and state.
TEST(GpuBackend, HopperFallsBackToThePortableKernelPastItsLimits) {
  if (!testing_hopper()) GTEST_SKIP() << "the fallback is the Hopper GPU's automatic choice";
  Config c;
  c.id = 4000;
  c.Lq = 40;
  c.Lk = 270000;  // 2110 key tiles of 128 at D = 64
  c.D = 64;
  c.threshold = -4.0f;
  c.locality = 0.1;
  c.order = VisitOrder::alternate;
  c.steps = 2;
  c.seed = 41;
  c.automatic_backend = true;
  for (const auto& f : run_config(c)) ADD_FAILURE() << f;
}

TEST(GpuBackend, DenseMatchesReferenceAndLeavesNoStateTouched) {
  for (i64 D : {64, 128})
    for (DType dtype : {DType::bf16, DType::f16}) {
      Problem p(2, 1000, 777, 4, 2, D, dtype);
      p.randomize(7 + D);
      DeviceProblem d(p, true);
      AttentionArgs& a = d.args;
      a.skip.enabled = false;
      a.must_skip = {{0, 300}};  // the key tiles that [0, 300) covers whole are never computed
      CUDA_OK(cudaMemset(d.out.ptr, 0xff, d.out.bytes));
      liteattn::attention(a);
      CUDA_OK(cudaDeviceSynchronize());
      download(p.out, d.out);
      std::vector<float> lse(std::size_t(2 * 4 * 1000));
      CUDA_OK(cudaMemcpy(lse.data(), d.lse.ptr, d.lse.bytes, cudaMemcpyDeviceToHost));
      const auto tile = liteattn::tile_shape(g_backend, D, dtype);
      const Reference ref =
          reference_attention(p, default_scale(D), tile, [&](i64, i64, i64, i64 j) { return (j + 1) * tile.n > 300; });
      EXPECT_LE(rel_l2_out(p.out, ref), kOutTolerance) << "D=" << D;
      EXPECT_LE(max_abs_lse_error(lse, ref), kLseTolerance) << "D=" << D;
    }
}

TEST(GpuBackend, AllSkippedRowsGiveZeroAndMinusInf) {
  Problem p(1, 300, 500, 2, 2, 128, DType::bf16);
  p.randomize(3);
  DeviceProblem d(p, true);
  AttentionArgs& a = d.args;
  a.must_skip = {{0, 500}};
  a.skip.enabled = true;
  SkipState state;
  CUDA_OK(cudaMemset(d.out.ptr, 0xff, d.out.bytes));
  liteattn::attention(a, state);
  CUDA_OK(cudaDeviceSynchronize());
  download(p.out, d.out);
  std::vector<float> lse(600);
  CUDA_OK(cudaMemcpy(lse.data(), d.lse.ptr, d.lse.bytes, cudaMemcpyDeviceToHost));
  for (i64 l = 0; l < 300; ++l)
    for (i64 h = 0; h < 2; ++h)
      for (i64 d = 0; d < 128; ++d) ASSERT_EQ(p.out.get(0, l, h, d), 0.0f);
  for (float x : lse) ASSERT_TRUE(std::isinf(x) && x < 0);
  const auto mask = state.read_mask();
  for (auto w : mask) ASSERT_EQ(w, 0u);
  EXPECT_EQ(state.stats().computed(), 0);
}

// Non-finite scores (method.md section 3). A NaN score makes its row's running max NaN for the
// rest of the call, so every later tile of that row votes keep and the `previous` criterion stores
// NaN; a key tile whose scores are all -inf adds nothing, also when a row visits it first (the
// alternate order's ascending calls visit must_do tile 0 first). Output, lse, written masks and
// stored maxima must follow the fp64 and CPU references over consecutive calls.
TEST(GpuBackend, NonFiniteScoresFollowTheReferences) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const i64 bn = liteattn::tile_shape(g_backend, 128, DType::bf16).n;
  auto corrupt = [=](Problem& p) {
    p.k.set(0, bn + 2, 0, 5, nan);  // head 0: NaN scores in key tile 1 for every row
    // Head 1: every query has dim 2 > 0 and every key of tile 0 has dim 2 = -inf: scores -inf.
    for (i64 l = 0; l < p.Lq; ++l) p.q.set(0, l, 1, 2, std::abs(p.q.get(0, l, 1, 2)) + 0.25f);
    for (i64 l = 0; l < bn; ++l) p.k.set(0, l, 1, 2, -inf);
    p.q.set(0, 200, 1, 9, nan);  // head 1: one query row with NaN scores everywhere
  };
  int id = 2000;
  for (Criterion criterion : {Criterion::running, Criterion::previous})
    for (VisitOrder order : {VisitOrder::descending, VisitOrder::alternate, VisitOrder::diagonal_first}) {
      Config c;
      c.id = id++;
      c.Lq = 300;
      c.Lk = 600;
      c.H = 2;
      c.Hkv = 2;
      c.threshold = -3.0f;
      c.locality = 0.2;
      c.criterion = criterion;
      c.order = order;
      c.must_do = {{0, bn}};
      c.steps = 3;
      c.seed = 5;
      c.corrupt = corrupt;
      for (const auto& f : run_config(c)) ADD_FAILURE() << f;
    }
}

TEST(GpuBackend, Deterministic) {
  Problem p(1, 4097, 4097, 2, 1, 128, DType::bf16);
  p.randomize(11);
  p.add_locality(0.1);
  DeviceProblem d(p, false);
  d.skip_alternating();
  AttentionArgs& a = d.args;
  SkipState s1, s2;
  for (int step = 0; step < 3; ++step) {
    liteattn::attention(a, s1);
    const auto first = d.out_bytes();
    CUDA_OK(cudaMemset(d.out.ptr, 0, d.out.bytes));
    liteattn::attention(a, s2);
    const auto second = d.out_bytes();
    EXPECT_TRUE(first == second) << "step " << step << ": outputs differ between identical calls";
    EXPECT_TRUE(s1.read_mask() == s2.read_mask()) << "step " << step << ": masks differ";
    EXPECT_EQ(s1.stats().computed(), s2.stats().computed());
  }
  std::printf("determinism: sparsity after 3 steps %.3f\n", s1.stats().next_sparsity());
}

// Two GPUs in one process: a call on GPU 1 while GPU 0 is current runs on GPU 1 (the library
// switches to the tensors' GPU and back), keeps its state there, and gives the same bytes as the
// same calls on GPU 0 (what a process that spreads sequence-parallel splits over its GPUs does).
TEST(GpuBackend, RunsOnAGpuOtherThanTheCurrentOne) {
  int gpus = 0;
  CUDA_OK(cudaGetDeviceCount(&gpus));
  if (gpus < 2) GTEST_SKIP() << "needs two GPUs";
  const auto on_gpu1 = liteattn::available_backends(liteattn::Device{liteattn::DeviceKind::cuda, 1});
  if (std::find(on_gpu1.begin(), on_gpu1.end(), g_backend) == on_gpu1.end())
    GTEST_SKIP() << "GPU 1 does not run the backend under test";
  Problem p(1, 1000, 1000, 2, 2, 128, DType::bf16);
  p.randomize(31);
  p.add_locality(0.002);
  DeviceProblem first(p, true, 0), second(p, true, 1);
  first.skip_alternating();
  second.skip_alternating();
  SkipState state_first, state_second;
  liteattn::cuda::DeviceGuard on(0);
  for (int step = 0; step < 3; ++step) {
    liteattn::attention(first.args, state_first);
    liteattn::attention(second.args, state_second);
    int current = -1;
    CUDA_OK(cudaGetDevice(&current));
    EXPECT_EQ(current, 0) << "step " << step << ": the call left GPU " << current << " current";
    const auto out = first.out_bytes();
    if (step == 0) {  // the first call computes every tile: dense attention
      download(p.out, first.out);
      const auto tile = liteattn::tile_shape(g_backend, 128, DType::bf16);
      EXPECT_LE(rel_l2_out(p.out, reference_attention(p, default_scale(128), tile)), kOutTolerance);
    }
    EXPECT_TRUE(second.out_bytes() == out) << "step " << step << ": out differs between the GPUs";
    EXPECT_TRUE(second.bytes_of(second.lse) == first.bytes_of(first.lse)) << "step " << step << ": lse differs";
    EXPECT_TRUE(state_second.read_mask() == state_first.read_mask()) << "step " << step << ": masks differ";
  }
  EXPECT_EQ(state_second.view().key.device.index, 1);
  EXPECT_EQ(state_second.stats().computed(), state_first.stats().computed());
  EXPECT_GT(state_second.stats().next_sparsity(), 0.0);
}

// A call captured in a CUDA graph on a non-default stream and replayed equals direct calls:
// no allocation, sync or default-stream work inside, and the buffer swap lives in device memory.
TEST(GpuBackend, CudaGraphReplayMatchesDirectCalls) {
  Problem p(1, 1000, 1000, 2, 2, 128, DType::bf16);
  p.randomize(21);
  p.add_locality(0.002);
  DeviceProblem d(p, false);
  d.skip_alternating();
  AttentionArgs& a = d.args;
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  a.stream = stream;

  SkipState direct, graphed;
  std::vector<std::vector<std::uint8_t>> outs;
  std::vector<std::vector<std::uint32_t>> masks;
  for (int step = 0; step < 3; ++step) {
    liteattn::attention(a, direct);
    outs.push_back(d.out_bytes());
    masks.push_back(direct.read_mask());
  }
  graphed.prepare(liteattn::state_key(a), stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  cudaGraph_t graph;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  liteattn::attention(a, graphed);
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int step = 0; step < 3; ++step) {
    CUDA_OK(cudaMemset(d.out.ptr, 0, d.out.bytes));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    EXPECT_TRUE(d.out_bytes() == outs[std::size_t(step)]) << "replay " << step << ": output differs from the direct call";
    EXPECT_TRUE(graphed.read_mask() == masks[std::size_t(step)]) << "replay " << step << ": mask differs";
  }
  std::printf("graph replay: sparsity after 3 replays %.3f\n", graphed.stats().next_sparsity());
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// A state's inspection reads wait for the calls before them whatever their stream: a plain copy
// on the legacy default stream is not ordered after work on a non-blocking stream.
TEST(GpuBackend, StateReadsWaitForCallsOnNonBlockingStreams) {
  Problem p(1, 16384, 16384, 8, 8, 128, DType::bf16);  // milliseconds per call: reads land mid-call
  p.randomize(23);
  p.add_locality(0.002);
  DeviceProblem d(p, false);
  d.skip_alternating();
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  d.args.stream = stream;
  SkipState state;
  liteattn::attention(d.args, state);
  liteattn::attention(d.args, state);  // reads the first call's votes: skips, and writes new ones
  const std::int64_t computed_right_after = state.stats().computed();
  const auto mask_right_after = state.read_mask();
  CUDA_OK(cudaStreamSynchronize(stream));
  EXPECT_EQ(computed_right_after, state.stats().computed());
  EXPECT_TRUE(mask_right_after == state.read_mask()) << "the mask read right after the call differs";
  EXPECT_GT(state.stats().last_sparsity(), 0.0) << "the second call must skip for this test to tell";
  cudaStreamDestroy(stream);
}

TEST(GpuBackend, BadInputsGiveClearErrors) {
  Problem p(1, 256, 256, 2, 2, 128, DType::bf16);
  p.randomize(5);
  DeviceProblem d(p, false);
  AttentionArgs good = d.args;
  good.skip.enabled = false;
  EXPECT_NO_THROW(liteattn::attention(good));

  auto expect_argument_error = [&](AttentionArgs a, const char* argument, const char* what) {
    try {
      liteattn::attention(a);
      ADD_FAILURE() << what << ": no error";
    } catch (const liteattn::ArgumentError& e) {
      EXPECT_EQ(e.argument(), argument) << what << ": " << e.what();
      std::printf("  %s -> %s\n", what, e.what());
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": unexpected " << e.what();
    }
  };
  {
    AttentionArgs a = good;
    a.k.dtype = DType::f16;
    expect_argument_error(a, "k", "dtype mismatch");
  }
  {
    AttentionArgs a = good;
    a.q.dtype = a.k.dtype = a.v.dtype = a.out.dtype = DType::f32;
    expect_argument_error(a, "q", "float32 on CUDA");
  }
  {
    AttentionArgs a = good;
    for (auto* t : {&a.q, &a.k, &a.v, &a.out}) t->shape[3] = 96;
    expect_argument_error(a, "q", "head dim 96");
  }
  {
    AttentionArgs a = good;
    a.out.device = liteattn::Device{};
    expect_argument_error(a, "out", "out on the CPU");
  }
  {
    AttentionArgs a = good;
    a.k.shape[1] = 200;
    expect_argument_error(a, "v", "k and v shapes differ");
  }
  {
    AttentionArgs a = good;
    int count = 0;
    CUDA_OK(cudaGetDeviceCount(&count));
    for (auto* t : {&a.q, &a.k, &a.v, &a.out}) t->device.index = count;
    expect_argument_error(a, "q", "a GPU index past the machine's GPUs");
  }
  {
    AttentionArgs a = good;
    a.backend = liteattn::Backend::cpu;
    expect_argument_error(a, "backend", "the CPU reference for GPU tensors");
  }
  {
    AttentionArgs a = good;
    a.q.stride[2] = 100;  // 200 bytes: not a multiple of 16
    expect_argument_error(a, "q", "stride not a multiple of 16 bytes");
  }
  {
    AttentionArgs a = good;
    a.q.data = static_cast<std::uint8_t*>(a.q.data) + 2;
    expect_argument_error(a, "q", "misaligned base");
  }
  if (testing_hopper()) {
    // More key tiles than the Hopper kernel's shared-memory lists hold: a clear UnsupportedError
    // before anything is read (the views' memory is never touched). The portable kernel reads
    // the mask from global memory and has no such limit.
    AttentionArgs a = good;
    a.k.shape[1] = a.v.shape[1] = 600000;
    a.k.stride[0] = a.v.stride[0] = 600000 * a.k.stride[1];
    try {
      liteattn::attention(a);
      ADD_FAILURE() << "Lk = 600000: no error";
    } catch (const liteattn::UnsupportedError& e) {
      std::printf("  Lk = 600000 -> %s\n", e.what());
    } catch (const std::exception& e) {
      ADD_FAILURE() << "Lk = 600000: unexpected " << e.what();
    }
  }
  {
    // A state made for another shape.
    AttentionArgs a = good;
    a.skip.enabled = true;
    SkipState state;
    liteattn::attention(a, state);
    AttentionArgs b = good;
    b.skip.enabled = true;
    b.k.shape[1] = b.v.shape[1] = 128;
    b.state = state.view();
    expect_argument_error(b, "state", "mask of the wrong shape");
  }
  CUDA_OK(cudaDeviceSynchronize());
}

}  // namespace

// --backend=sm90 (default) or --backend=sm80. Exits 77 ("skipped") where no GPU runs it.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);  // removes the gtest flags
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--backend=sm90") g_backend = liteattn::Backend::sm90;
    else if (arg == "--backend=sm80") g_backend = liteattn::Backend::sm80;
    else {
      std::fprintf(stderr, "unknown argument %s (expected --backend=sm90 or --backend=sm80)\n", arg.c_str());
      return 2;
    }
  }
  const auto available = liteattn::available_backends();
  if (std::find(available.begin(), available.end(), g_backend) == available.end()) {
    std::printf("skipped: no GPU for backend %s (sm90 needs an H100/H200, sm80 any GPU of compute capability 8.0+)\n",
                std::string(liteattn::to_string(g_backend)).c_str());
    return 77;
  }
  std::printf("backend under test: %s\n", std::string(liteattn::to_string(g_backend)).c_str());
  return RUN_ALL_TESTS();
}
