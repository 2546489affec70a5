// Every argument rule of the contract, in one place for every backend. A rejected call throws
// before anything is written, so outputs and state stay as they were.
#include <cmath>
#include <limits>
#include <string>

#include "backends.hpp"
#include "liteattn/attention.hpp"
#include "liteattn/error.hpp"
#include "plan.hpp"
#include "sm90/tile_config.hpp"
#include "tensor_rules.hpp"

namespace liteattn {
namespace {

// More CPU worker threads than this is a mistake rather than a machine.
constexpr int kMaxCpuThreads = 1024;

// The message is built only when the check fails: validate() runs on every call, and building
// its ~30 messages eagerly cost several microseconds of host time per call.
template <class MakeMessage>
void require(bool condition, const char* argument, MakeMessage&& make_message,
             ArgumentError::Kind kind = ArgumentError::Kind::value) {
  if (!condition) throw ArgumentError(argument, std::string(make_message()), kind);
}
void require(bool condition, const char* argument, const char* message,
             ArgumentError::Kind kind = ArgumentError::Kind::value) {
  if (!condition) throw ArgumentError(argument, message, kind);
}

void check_ranges(const std::vector<TokenRange>& ranges, std::int64_t length, const char* name,
                  const char* length_name) {
  require(static_cast<int>(ranges.size()) <= kMaxRanges, name, [&] {
    return "at most " + std::to_string(kMaxRanges) + " ranges are supported, got " + std::to_string(ranges.size());
  });
  std::int64_t previous_end = 0;
  for (std::size_t r = 0; r < ranges.size(); ++r) {
    const auto [begin, end] = ranges[r];
    auto where = [&] {
      return "range " + std::to_string(r) + " [" + std::to_string(begin) + ", " + std::to_string(end) + ")";
    };
    require(begin >= 0 && begin < end && end <= length, name, [&] {
      return where() + " must satisfy 0 <= start < end <= " + length_name + " = " + std::to_string(length);
    });
    require(r == 0 || begin >= previous_end, name,
            [&] { return where() + " must be ascending and not overlap the previous range"; });
    previous_end = end;
  }
}

bool ranges_overlap(const std::vector<TokenRange>& a, const std::vector<TokenRange>& b) {
  for (const auto& x : a)
    for (const auto& y : b)
      if (x.begin < y.end && y.begin < x.end) return true;
  return false;
}

// Where the outputs live, once every rule of shape, type and device holds: out is written while
// q, k and v are read (by other query tiles; on the GPU by other CTAs), so no output may overlap
// an input or itself.
void check_memory(const AttentionArgs& args) {
  check_writable_layout(args.out, "out");
  for (const auto* input : {&args.q, &args.k, &args.v}) {
    require(!overlaps(args.out, *input), "out", [&] {
      return std::string("expected memory apart from ") + (input == &args.q ? "q" : input == &args.k ? "k" : "v") +
             ", got overlapping views";
    });
  }
  if (args.lse.defined())
    for (const auto* other : {&args.q, &args.k, &args.v, &args.out})
      require(!overlaps(args.lse, *other), "lse", "expected memory apart from q, k, v and out, got overlapping views");
}

}  // namespace

Backend validate_without_state(const AttentionArgs& args) {
  check_tensor(args.q, "q", "(B, Lq, H, D)");
  check_tensor(args.k, "k", "(B, Lk, Hkv, D)");
  check_tensor(args.v, "v", "(B, Lk, Hkv, D)");
  check_tensor(args.out, "out", "(B, Lq, H, D)");
  const auto& q = args.q;
  const std::int64_t B = q.shape[0], Lq = q.shape[1], H = q.shape[2], D = q.shape[3];
  const std::int64_t Lk = args.k.shape[1], Hkv = args.k.shape[2];

  for (const auto* t : {&args.k, &args.v, &args.out}) {
    const char* name = t == &args.k ? "k" : t == &args.v ? "v" : "out";
    require(
        t->dtype == q.dtype, name,
        [&] {
          return std::string("expected dtype ") + std::string(to_string(q.dtype)) + " (as q), got " +
                 std::string(to_string(t->dtype));
        },
        ArgumentError::Kind::type);
    require(t->device == q.device, name,
            [&] { return "expected device " + to_string(q.device) + " (as q), got " + to_string(t->device); });
  }
  require(args.k.shape[0] == B && args.k.shape[3] == D, "k", [&] {
    return "expected (B, Lk, Hkv, D) with B = " + std::to_string(B) + " and D = " + std::to_string(D) + " as q, got " +
           shape_string(args.k);
  });
  require(args.v.shape == args.k.shape, "v",
          [&] { return "expected the shape of k " + shape_string(args.k) + ", got " + shape_string(args.v); });
  require(H % Hkv == 0, "k", [&] {
    return "expected a head count dividing q's " + std::to_string(H) + " heads (GQA), got " + std::to_string(Hkv);
  });
  require(args.out.shape == q.shape, "out",
          [&] { return "expected the shape of q " + shape_string(q) + ", got " + shape_string(args.out); });

  if (q.device.kind == DeviceKind::cuda) {
    require(q.dtype != DType::f32, "q", "expected bfloat16 or float16 on CUDA, got float32", ArgumentError::Kind::type);
    require(sm90::supports_head_dim(D), "q",
            [&] { return "expected head_dim 64 or 128 on CUDA, got " + std::to_string(D); });
  } else {
    require(D <= 512, "q", [&] { return "expected head_dim <= 512, got " + std::to_string(D); });
  }

  if (args.lse.defined()) {
    const auto& lse = args.lse;
    require(
        lse.dtype == DType::f32, "lse",
        [&] { return "expected dtype float32, got " + std::string(to_string(lse.dtype)); }, ArgumentError::Kind::type);
    require(lse.device == q.device, "lse",
            [&] { return "expected device " + to_string(q.device) + " (as q), got " + to_string(lse.device); });
    require(lse.rank == 3 && lse.shape[0] == B && lse.shape[1] == H && lse.shape[2] == Lq, "lse", [&] {
      return "expected shape (B, H, Lq) = (" + std::to_string(B) + ", " + std::to_string(H) + ", " +
             std::to_string(Lq) + "), got " + shape_string(lse);
    });
    require(lse.stride[2] == 1 && lse.stride[1] == Lq && lse.stride[0] == H * Lq, "lse",
            "expected a contiguous tensor");
  }

  if (args.scale) {
    // The kernels work with scale * log2(e) in float: it must be finite too.
    constexpr float kMaxScale = std::numeric_limits<float>::max() / 1.4426950408889634f;
    require(*args.scale > 0 && *args.scale <= kMaxScale, "scale",
            [&] { return "expected a positive number below 2.3e38, got " + std::to_string(*args.scale); });
  }
  if (args.cpu_tile) {
    require(q.device.kind == DeviceKind::cpu, "cpu_tile", "only the CPU reference takes a tile shape");
    require(args.cpu_tile->m >= 1 && args.cpu_tile->n >= 1 && args.cpu_tile->m <= 4096 && args.cpu_tile->n <= 4096,
            "cpu_tile", "expected 1 <= m, n <= 4096");
  }
  require(args.cpu_threads >= 0 && args.cpu_threads <= kMaxCpuThreads, "cpu_threads", [&] {
    return "expected 0 (all cores) to " + std::to_string(kMaxCpuThreads) + ", got " + std::to_string(args.cpu_threads);
  });
  require(args.skip.criterion == Criterion::running || args.skip.criterion == Criterion::previous, "criterion",
          "expected running or previous");
  require(args.skip.order == VisitOrder::descending || args.skip.order == VisitOrder::alternate ||
              args.skip.order == VisitOrder::diagonal_first,
          "order", "expected descending, alternate or diagonal_first");

  check_ranges(args.must_do, Lk, "must_do", "Lk");
  check_ranges(args.must_skip, Lk, "must_skip", "Lk");
  check_ranges(args.dense_queries, Lq, "dense_queries", "Lq");
  require(!ranges_overlap(args.must_do, args.must_skip), "must_skip", "must not overlap must_do");

  if (args.skip.enabled) {
    const float t = args.skip.threshold;
    require(!std::isnan(t) && t <= 0.0f, "threshold",
            [&] { return "expected a number <= 0 in log2 units (e.g. -10), got " + std::to_string(t); });
  }

  require(!args.backend || *args.backend == Backend::cpu || *args.backend == Backend::sm90 ||
              *args.backend == Backend::sm80,
          "backend", "expected cpu, sm90 or sm80");
  // Last, as it asks the GPU for its capability: args.backend against the device, and the rules
  // of the kernel that will serve the call.
  const Backend backend = select_backend(args);
#if defined(LITEATTN_WITH_CUDA)
  if (backend == Backend::sm90) check_sm90_args(args);
  if (backend == Backend::sm80) check_sm80_args(args);
#endif
  check_memory(args);
  return backend;
}

Backend validate_and_select(const AttentionArgs& args) {
  const Backend backend = validate_without_state(args);
  if (!args.skip.enabled) return backend;
  require(args.state.defined(), "state", "skipping is enabled: expected a skip state (or disable skipping)");
  const StateKey expected = state_key(args);
  expected.check("state");
  require(args.state.key == expected, "state", [&] {
    return "made for " + args.state.key.describe() + ", but this call needs " + expected.describe() + " (reset it)";
  });
  require(!expected.with_row_max || args.state.row_max != nullptr, "state",
          "the 'previous' criterion needs the row-max buffer");
  require(args.state.row_visits != nullptr && args.state.kept != nullptr, "state", "incomplete buffers");
  return backend;
}

void validate(const AttentionArgs& args) { validate_and_select(args); }

}  // namespace liteattn
