// The nanobind extension `lite_attention._ext`: a thin layer from DLPack tensors (NumPy, PyTorch,
// CuPy, JAX, ... through nb::ndarray) to liteattn::AttentionArgs. It never links libtorch and
// never allocates tensors: the Python layer allocates out, lse and the skip-state buffers with
// the input's own array library and passes views here. CUDA work runs on the stream passed in.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "liteattn/liteattn.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using liteattn::ArgumentError;
using Array = nb::ndarray<nb::ro>;  // read-only access is enough to describe any array
using OptArray = std::optional<Array>;
using Ranges = std::vector<std::pair<std::int64_t, std::int64_t>>;

[[noreturn]] void fail(const std::string& argument, const std::string& message,
                       ArgumentError::Kind kind = ArgumentError::Kind::value) {
  throw ArgumentError(argument, message, kind);
}

std::string dtype_name(nb::dlpack::dtype t) {
  const char* code = "?";
  switch (static_cast<nb::dlpack::dtype_code>(t.code)) {
    case nb::dlpack::dtype_code::Int: code = "int"; break;
    case nb::dlpack::dtype_code::UInt: code = "uint"; break;
    case nb::dlpack::dtype_code::Float: code = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: code = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: code = "complex"; break;
    case nb::dlpack::dtype_code::Bool: code = "bool"; break;
    default: break;
  }
  return std::string(code) + std::to_string(t.bits);
}

liteattn::DType to_dtype(nb::dlpack::dtype t, const char* name) {
  if (t.lanes == 1) {
    if (t.code == uint8_t(nb::dlpack::dtype_code::Float) && t.bits == 32) return liteattn::DType::f32;
    if (t.code == uint8_t(nb::dlpack::dtype_code::Float) && t.bits == 16) return liteattn::DType::f16;
    if (t.code == uint8_t(nb::dlpack::dtype_code::Bfloat) && t.bits == 16) return liteattn::DType::bf16;
    // NumPy cannot export ml_dtypes.bfloat16 through DLPack, so the Python layer passes such
    // arrays as uint16 views of their bits (it rejects genuine uint16 inputs before this point).
    if (t.code == uint8_t(nb::dlpack::dtype_code::UInt) && t.bits == 16) return liteattn::DType::bf16;
  }
  fail(name, "expected dtype bfloat16, float16 or float32, got " + dtype_name(t), ArgumentError::Kind::type);
}

liteattn::Device to_device(const Array& a, const char* name) {
  switch (a.device_type()) {
    case nb::device::cpu::value: return {liteattn::DeviceKind::cpu, 0};
    case nb::device::cuda::value:
    case nb::device::cuda_managed::value: return {liteattn::DeviceKind::cuda, a.device_id()};
    default: break;
  }
  fail(name, "expected a CPU or CUDA array, got DLPack device type " + std::to_string(a.device_type()));
}

// A TensorView over any array of rank <= 4 with a supported floating dtype.
liteattn::TensorView view_of(const Array& a, const char* name) {
  if (a.ndim() > 4) fail(name, "expected rank 4 (B, L, H, D), got rank " + std::to_string(a.ndim()));
  liteattn::TensorView t;
  t.data = const_cast<void*>(a.data());
  t.dtype = to_dtype(a.dtype(), name);
  t.device = to_device(a, name);
  t.rank = static_cast<int>(a.ndim());
  for (int d = 0; d < t.rank; ++d) {
    t.shape[d] = static_cast<std::int64_t>(a.shape(d));
    t.stride[d] = a.stride(d);
  }
  // Dimensions of extent 1 may carry any stride; normalize the last one so that a (.., 1)
  // head dim is not rejected for a meaningless stride.
  if (t.rank > 0 && t.shape[t.rank - 1] == 1) t.stride[t.rank - 1] = 1;
  return t;
}

// A call's backend: "auto" (unset: chosen by the tensors' device) or a liteattn::Backend by name.
// The C++ core checks a named backend against the device (ArgumentError naming `backend`).
std::optional<liteattn::Backend> parse_backend(const std::string& text) {
  if (text == "auto") return std::nullopt;
  for (auto b : {liteattn::Backend::cpu, liteattn::Backend::sm90, liteattn::Backend::sm80})
    if (text == liteattn::to_string(b)) return b;
  fail("backend", "expected 'auto', 'cpu', 'sm90' or 'sm80', got '" + text + "'");
}

std::vector<liteattn::TokenRange> to_ranges(const Ranges& ranges) {
  std::vector<liteattn::TokenRange> out;
  out.reserve(ranges.size());
  for (const auto& [b, e] : ranges) out.push_back({b, e});
  return out;
}

// The part of AttentionArgs that decides a state's key: shapes, dtype, device, tile, criterion.
liteattn::AttentionArgs probe_args(std::int64_t batch, std::int64_t len_q, std::int64_t heads, std::int64_t head_dim,
                                   std::int64_t len_k, const std::string& dtype, const std::string& device_kind,
                                   int device_index, const std::string& criterion,
                                   std::optional<std::pair<int, int>> cpu_tile) {
  constexpr std::int64_t kMaxDimension = std::numeric_limits<std::int32_t>::max();
  const std::pair<const char*, std::int64_t> dimensions[] = {
      {"batch", batch}, {"len_q", len_q}, {"heads", heads}, {"head_dim", head_dim}, {"len_k", len_k}};
  for (const auto& [name, n] : dimensions)
    if (n < 1 || n > kMaxDimension) fail(name, "expected 1 to 2^31 - 1, got " + std::to_string(n));
  if (cpu_tile && (cpu_tile->first < 1 || cpu_tile->second < 1 || cpu_tile->first > 4096 || cpu_tile->second > 4096))
    fail("cpu_tile", "expected (rows, cols) with 1 <= rows, cols <= 4096, got (" + std::to_string(cpu_tile->first) +
                         ", " + std::to_string(cpu_tile->second) + ")");
  liteattn::AttentionArgs args;
  args.q.rank = 4;
  args.q.shape = {batch, len_q, heads, head_dim};
  args.q.dtype = liteattn::parse_dtype(dtype, "dtype");
  if (device_kind == "cpu") args.q.device = {liteattn::DeviceKind::cpu, 0};
  else if (device_kind == "cuda") args.q.device = {liteattn::DeviceKind::cuda, device_index};
  else fail("device", "expected 'cpu' or 'cuda', got '" + device_kind + "'");
  args.k.rank = 4;
  args.k.shape = {batch, len_k, heads, head_dim};
  args.skip.criterion = liteattn::parse_criterion(criterion, "criterion");
  if (cpu_tile) args.cpu_tile = liteattn::TileShape{cpu_tile->first, cpu_tile->second};
  return args;
}

// The state key of probe_args, checked (its sizes are exact only for a key that passes).
liteattn::StateKey probe_key(std::int64_t batch, std::int64_t len_q, std::int64_t heads, std::int64_t head_dim,
                             std::int64_t len_k, const std::string& dtype, const std::string& device_kind,
                             int device_index, const std::string& criterion,
                             std::optional<std::pair<int, int>> cpu_tile) {
  const auto key = liteattn::state_key(
      probe_args(batch, len_q, heads, head_dim, len_k, dtype, device_kind, device_index, criterion, cpu_tile));
  key.check("state");
  return key;
}

nb::dict describe_key(const liteattn::StateKey& key) {
  nb::dict d;
  d["batch"] = key.batch;
  d["heads"] = key.heads;
  d["len_q"] = key.len_q;
  d["len_k"] = key.len_k;
  d["head_dim"] = key.head_dim;
  d["dtype"] = std::string(liteattn::to_string(key.dtype));
  d["device"] = liteattn::to_string(key.device);
  d["tile"] = std::make_tuple(key.tile.m, key.tile.n);
  d["with_row_max"] = key.with_row_max;
  d["q_tiles"] = key.q_tiles();
  d["k_tiles"] = key.k_tiles();
  d["words_per_row"] = key.words_per_row();
  d["rows"] = key.rows();
  // Element counts of the four buffers (uint32, uint32, float32, uint32).
  d["mask"] = std::int64_t(key.mask_bytes() / 4);
  d["row_visits"] = std::int64_t(key.row_visits_bytes() / 4);
  d["row_max"] = std::int64_t(key.row_max_bytes() / 4);
  d["kept"] = std::int64_t(key.kept_bytes() / 4);
  d["total_bytes"] = std::int64_t(key.total_bytes());
  d["describe"] = key.describe();
  return d;
}

// One state buffer: contiguous, of the expected element type and count, on the state's device.
template <class T>
T* state_buffer(const OptArray& a, const char* name, std::int64_t count, nb::dlpack::dtype want,
                const liteattn::Device& device) {
  if (!a) fail(name, "expected a state buffer of " + std::to_string(count) + " elements, got None", ArgumentError::Kind::type);
  const Array& x = *a;
  // uint32 buffers may also come as int32 (same bits; torch's uint32 has few operators).
  const bool same_bits = want.code == uint8_t(nb::dlpack::dtype_code::UInt) && x.dtype() == nb::dtype<std::int32_t>();
  if (x.dtype() != want && !same_bits)
    fail(name, "expected dtype " + dtype_name(want) + ", got " + dtype_name(x.dtype()), ArgumentError::Kind::type);
  if (std::int64_t(x.size()) != count)
    fail(name, "expected " + std::to_string(count) + " elements for this state key, got " + std::to_string(x.size()));
  std::int64_t step = 1;
  for (int d = int(x.ndim()) - 1; d >= 0; --d) {
    if (x.shape(d) != 1 && x.stride(d) != step) fail(name, "expected a contiguous buffer");
    step *= std::int64_t(x.shape(d));
  }
  const liteattn::Device dev = to_device(x, name);
  if (!(dev == device)) fail(name, "expected device " + liteattn::to_string(device) + " (as q), got " + liteattn::to_string(dev));
  return static_cast<T*>(const_cast<void*>(x.data()));
}

// The state's buffers as a view; cumulative (B * H int64 running totals of the kept counts, which
// the kernel adds to) is optional.
liteattn::SkipStateView state_view(const liteattn::StateKey& key, const OptArray& mask, const OptArray& row_visits,
                                   const OptArray& row_max, const OptArray& kept, const OptArray& cumulative = {}) {
  liteattn::SkipStateView view;
  view.key = key;
  view.mask = state_buffer<std::uint32_t>(mask, "state.mask", std::int64_t(key.mask_bytes() / 4), nb::dtype<std::uint32_t>(), key.device);
  view.row_visits = state_buffer<std::uint32_t>(row_visits, "state.row_visits", key.rows(), nb::dtype<std::uint32_t>(), key.device);
  view.kept = state_buffer<std::uint32_t>(kept, "state.kept", key.kept_words(), nb::dtype<std::uint32_t>(), key.device);
  if (key.with_row_max)
    view.row_max = state_buffer<float>(row_max, "state.row_max", key.batch * key.heads * key.len_q, nb::dtype<float>(), key.device);
  if (cumulative)
    view.cumulative = state_buffer<std::int64_t>(cumulative, "state.cumulative", key.batch * key.heads,
                                                 nb::dtype<std::int64_t>(), key.device);
  return view;
}

// A skip state's buffers, checked against the state's key once, when the Python state first
// passes them (SkipState.handle): calls then take this instead of the arrays (importing and
// checking five arrays costs several microseconds of every call's host time). It holds the
// arrays, so the buffers live at least as long as it does. cumulative (B * H int64 running totals
// of the kept counts, which every skipping call adds to; the caller zeroes it, reset does not
// touch it) is optional.
struct StateBuffers {
  Array mask, row_visits, kept;
  OptArray row_max, cumulative;
  liteattn::SkipStateView view;
};

StateBuffers state_buffers(std::int64_t batch, std::int64_t len_q, std::int64_t heads, std::int64_t head_dim,
                           std::int64_t len_k, const std::string& dtype, const std::string& device_kind,
                           int device_index, const std::string& criterion, std::optional<std::pair<int, int>> cpu_tile,
                           const OptArray& mask, const OptArray& row_visits, const OptArray& row_max,
                           const OptArray& kept, const OptArray& cumulative) {
  const auto key = probe_key(batch, len_q, heads, head_dim, len_k, dtype, device_kind, device_index, criterion, cpu_tile);
  const auto view = state_view(key, mask, row_visits, row_max, kept, cumulative);
  return StateBuffers{*mask, *row_visits, *kept, row_max, cumulative, view};  // state_view checked them
}

// The attention call on tensors already in args (q, k, v, out). lse: fp32 (B, H, Lq) or None;
// state: the skip state (None when skipping is disabled), whose key must be this call's. With
// reset=True the state is re-initialised (after every argument check passed) before the call
// reads it, also when skipping is disabled for this call (a warm-up step on a fresh state).
void run_call(liteattn::AttentionArgs args, const OptArray& lse, const StateBuffers* state, std::optional<double> scale,
              bool enabled, double threshold, const std::string& criterion, const std::string& order,
              const Ranges& must_do, const Ranges& must_skip, const Ranges& dense_queries,
              std::optional<std::pair<int, int>> cpu_tile, int cpu_threads, const std::string& backend,
              std::uintptr_t stream, bool reset) {
  if (lse) {
    const Array& l = *lse;
    if (l.dtype() != nb::dtype<float>())
      fail("lse", "expected dtype float32, got " + dtype_name(l.dtype()), ArgumentError::Kind::type);
    args.lse = view_of(l, "lse");
  }
  if (scale) args.scale = static_cast<float>(*scale);
  args.skip.enabled = enabled;
  args.skip.threshold = static_cast<float>(threshold);
  args.skip.criterion = liteattn::parse_criterion(criterion, "criterion");
  args.skip.order = liteattn::parse_visit_order(order, "order");
  args.must_do = to_ranges(must_do);
  args.must_skip = to_ranges(must_skip);
  args.dense_queries = to_ranges(dense_queries);
  if (cpu_tile) args.cpu_tile = liteattn::TileShape{cpu_tile->first, cpu_tile->second};
  args.cpu_threads = cpu_threads;
  args.backend = parse_backend(backend);
  args.stream = reinterpret_cast<void*>(stream);

  // Tensors, ranges and scale first (state_key needs valid shapes), then the state buffers.
  liteattn::AttentionArgs without_state = args;
  without_state.skip.enabled = false;
  liteattn::validate(without_state);
  if (enabled && (std::isnan(threshold) || threshold > 0.0))
    fail("threshold", "expected a number <= 0 in log2 units (e.g. -10), got " + std::to_string(threshold));
  // A disabled call (warm-up) leaves the state alone, but still initialises a fresh one (reset).
  if (enabled || (reset && state)) {
    if (!state) fail("state", "expected the skip state of a skipping call, got None", ArgumentError::Kind::type);
    const liteattn::StateKey key = liteattn::state_key(args);
    if (!(state->view.key == key))
      fail("state", "expected a state for " + key.describe() + ", got one for " + state->view.key.describe());
    args.state = state->view;
  }
  // Every check runs before anything is written, so a rejected call leaves out and state as
  // they were (the reset below included).
  liteattn::validate(args);
  nb::gil_scoped_release release;
  if (reset && args.state.defined()) liteattn::reset_state(args.state, args.stream);
  liteattn::attention(args);
}

// The attention call on DLPack arrays; out is (B, Lq, H, D) like q.
void forward(const Array& q, const Array& k, const Array& v, const Array& out, const OptArray& lse,
             const StateBuffers* state, std::optional<double> scale, bool enabled, double threshold,
             const std::string& criterion, const std::string& order, const Ranges& must_do, const Ranges& must_skip,
             const Ranges& dense_queries, std::optional<std::pair<int, int>> cpu_tile, int cpu_threads,
             const std::string& backend, std::uintptr_t stream, bool reset) {
  liteattn::AttentionArgs args;
  args.q = view_of(q, "q");
  args.k = view_of(k, "k");
  args.v = view_of(v, "v");
  args.out = view_of(out, "out");
  run_call(args, lse, state, scale, enabled, threshold, criterion, order, must_do, must_skip, dense_queries, cpu_tile,
           cpu_threads, backend, stream, reset);
}

// The layout of a call's q, k, v and out (shapes, strides, dtype, device), read from DLPack arrays
// of q, k, v once (out is contiguous, of q's shape): calls of that layout then pass only the four
// data pointers to forward_layout (exporting and importing four DLPack tensors costs a few
// microseconds of every call's host time). A call still runs every check on the layout with its
// pointers.
struct CallLayout {
  liteattn::TensorView q, k, v, out;
};

// t's shape, dtype and device with contiguous strides (what torch.empty_like(t) gives).
liteattn::TensorView contiguous_like(liteattn::TensorView t) {
  std::int64_t step = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.stride[d] = step;
    step *= t.shape[d];
  }
  return t;
}

void forward_layout(const CallLayout& layout, std::uintptr_t q, std::uintptr_t k, std::uintptr_t v, std::uintptr_t out,
                    const OptArray& lse, const StateBuffers* state, std::optional<double> scale, bool enabled,
                    double threshold, const std::string& criterion, const std::string& order, const Ranges& must_do,
                    const Ranges& must_skip, const Ranges& dense_queries, std::optional<std::pair<int, int>> cpu_tile,
                    int cpu_threads, const std::string& backend, std::uintptr_t stream, bool reset) {
  liteattn::AttentionArgs args;
  args.q = layout.q;
  args.k = layout.k;
  args.v = layout.v;
  args.out = layout.out;
  args.q.data = reinterpret_cast<void*>(q);
  args.k.data = reinterpret_cast<void*>(k);
  args.v.data = reinterpret_cast<void*>(v);
  args.out.data = reinterpret_cast<void*>(out);
  run_call(args, lse, state, scale, enabled, threshold, criterion, order, must_do, must_skip, dense_queries, cpu_tile,
           cpu_threads, backend, stream, reset);
}

void reset_state(const StateBuffers& state, std::uintptr_t stream) {
  nb::gil_scoped_release release;
  liteattn::reset_state(state.view, reinterpret_cast<void*>(stream));
}

void merge(const std::vector<Array>& outs, const std::vector<Array>& lses, const Array& out, const OptArray& lse) {
  std::vector<liteattn::TensorView> o, l;
  for (std::size_t j = 0; j < outs.size(); ++j) o.push_back(view_of(outs[j], "outs"));
  for (std::size_t j = 0; j < lses.size(); ++j) l.push_back(view_of(lses[j], "lses"));
  const auto out_view = view_of(out, "out");
  const auto lse_view = lse ? view_of(*lse, "lse") : liteattn::TensorView{};
  nb::gil_scoped_release release;
  liteattn::merge_attention(o, l, out_view, lse_view);
}

}  // namespace

NB_MODULE(_ext, m) {
  m.doc() = "LiteAttention C++ core binding (DLPack tensors; no libtorch).";

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const liteattn::ArgumentError& e) {
      PyErr_SetString(e.kind() == liteattn::ArgumentError::Kind::type ? PyExc_TypeError : PyExc_ValueError, e.what());
    } catch (const liteattn::UnsupportedError& e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    } catch (const liteattn::CudaError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  m.attr("__version__") = std::to_string(LITEATTN_VERSION_MAJOR) + "." + std::to_string(LITEATTN_VERSION_MINOR) + "." +
                          std::to_string(LITEATTN_VERSION_PATCH);
#if defined(LITEATTN_WITH_CUDA)
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif

  nb::class_<StateBuffers>(m, "StateBuffers",
                           "A skip state's buffers, checked against its key (see binding.cpp); holds the arrays.")
      .def("__init__",
           [](StateBuffers* self, std::int64_t batch, std::int64_t len_q, std::int64_t heads, std::int64_t head_dim,
              std::int64_t len_k, const std::string& dtype, const std::string& device_kind, int device_index,
              const std::string& criterion, std::optional<std::pair<int, int>> cpu_tile, const OptArray& mask,
              const OptArray& row_visits, const OptArray& row_max, const OptArray& kept, const OptArray& cumulative) {
             new (self) StateBuffers(state_buffers(batch, len_q, heads, head_dim, len_k, dtype, device_kind,
                                                   device_index, criterion, cpu_tile, mask, row_visits, row_max,
                                                   kept, cumulative));
           },
           "batch"_a, "len_q"_a, "heads"_a, "head_dim"_a, "len_k"_a, "dtype"_a, "device_kind"_a, "device_index"_a,
           "criterion"_a, "cpu_tile"_a.none(), "mask"_a.none(), "row_visits"_a.none(), "row_max"_a.none(),
           "kept"_a.none(), "cumulative"_a.none());

  nb::class_<CallLayout>(m, "CallLayout", "The layout of a call's q, k, v and out (see binding.cpp).")
      .def("__init__",
           [](CallLayout* self, const Array& q, const Array& k, const Array& v) {
             const auto qv = view_of(q, "q");
             new (self) CallLayout{qv, view_of(k, "k"), view_of(v, "v"), contiguous_like(qv)};
           },
           "q"_a, "k"_a, "v"_a);

  m.def("forward_layout", &forward_layout, "layout"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a.none(), "state"_a.none(),
        "scale"_a.none(), "enabled"_a, "threshold"_a, "criterion"_a, "order"_a, "must_do"_a, "must_skip"_a,
        "dense_queries"_a, "cpu_tile"_a.none(), "cpu_threads"_a, "backend"_a, "stream"_a, "reset"_a,
        "forward on data pointers of arrays of a CallLayout (the caller keeps the arrays alive).");

  m.def("forward", &forward, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a.none(), "state"_a.none(), "scale"_a.none(), "enabled"_a, "threshold"_a,
        "criterion"_a, "order"_a, "must_do"_a, "must_skip"_a, "dense_queries"_a, "cpu_tile"_a.none(), "cpu_threads"_a, "backend"_a, "stream"_a, "reset"_a,
        "Runs liteattn::attention over caller-owned buffers (see lite_attention/_core.py).");

  m.def(
      "state_layout",
      [](std::int64_t batch, std::int64_t len_q, std::int64_t heads, std::int64_t head_dim, std::int64_t len_k,
         const std::string& dtype, const std::string& device_kind, int device_index, const std::string& criterion,
         std::optional<std::pair<int, int>> cpu_tile) {
        return describe_key(
            probe_key(batch, len_q, heads, head_dim, len_k, dtype, device_kind, device_index, criterion, cpu_tile));
      },
      "batch"_a, "len_q"_a, "heads"_a, "head_dim"_a, "len_k"_a, "dtype"_a, "device_kind"_a, "device_index"_a,
      "criterion"_a, "cpu_tile"_a.none(), "The StateKey (sizes of the state buffers) a call with these arguments needs.");

  m.def("reset_state", &reset_state, "state"_a, "stream"_a, "Writes the initial skip state into the buffers.");

  m.def(
      "tile_shape",
      [](std::int64_t head_dim, const std::string& dtype) {
        const auto t = liteattn::tile_shape(liteattn::Backend::sm90, head_dim, liteattn::parse_dtype(dtype, "dtype"));
        return std::make_pair(t.m, t.n);
      },
      "head_dim"_a, "dtype"_a = "bfloat16");

  m.def("merge_attention", &merge, "outs"_a, "lses"_a, "out"_a, "lse"_a.none(),
        "LSE merge of partial results over disjoint key sets (CPU arrays).");

  m.def("cuda_available", &liteattn::cuda_available);
  // device: None (every backend that serves this machine) or (kind, index), kind "cpu" or "cuda".
  m.def(
      "available_backends",
      [](std::optional<std::pair<std::string, int>> device) {
        std::vector<liteattn::Backend> backends;
        if (!device) {
          backends = liteattn::available_backends();
        } else {
          if (device->first != "cpu" && device->first != "cuda")
            throw liteattn::ArgumentError("device", "expected 'cpu' or 'cuda', got '" + device->first + "'");
          const auto kind = device->first == "cpu" ? liteattn::DeviceKind::cpu : liteattn::DeviceKind::cuda;
          backends = liteattn::available_backends(liteattn::Device{kind, device->second});
        }
        std::vector<std::string> names;
        for (auto b : backends) names.emplace_back(liteattn::to_string(b));
        return names;
      },
      "device"_a = nb::none());

  // ThresholdSchedule JSON, through the C++ reader and writer (the Python class mirrors them).
  m.def("schedule_to_json", [](const std::vector<float>& thresholds, int warmup) {
    return liteattn::ThresholdSchedule::per_step(thresholds, warmup).to_json();
  });
  m.def("schedule_from_json", [](const std::string& text) {
    const auto s = liteattn::ThresholdSchedule::from_json(text);
    return std::make_pair(s.thresholds(), s.warmup_steps());
  });

  nb::class_<liteattn::WorkloadConfig>(m, "WorkloadConfig")
      .def(nb::init<>())
      .def_static("preset", [](const std::string& name) { return liteattn::workload_preset(name); }, "name"_a)
      .def_rw("frames", &liteattn::WorkloadConfig::frames)
      .def_rw("height", &liteattn::WorkloadConfig::height)
      .def_rw("width", &liteattn::WorkloadConfig::width)
      .def_rw("heads", &liteattn::WorkloadConfig::heads)
      .def_rw("head_dim", &liteattn::WorkloadConfig::head_dim)
      .def_rw("steps", &liteattn::WorkloadConfig::steps)
      .def_rw("seed", &liteattn::WorkloadConfig::seed)
      .def_rw("shift", &liteattn::WorkloadConfig::shift)
      .def_prop_ro("tokens", &liteattn::WorkloadConfig::tokens);

  nb::class_<liteattn::VideoWorkload>(m, "VideoWorkload")
      .def(nb::init<const liteattn::WorkloadConfig&>(), "config"_a)
      .def_prop_ro("config", &liteattn::VideoWorkload::config)
      .def("sigma", &liteattn::VideoWorkload::sigma, "step"_a)
      .def("locality", &liteattn::VideoWorkload::locality, "head"_a)
      .def(
          "generate",
          [](const liteattn::VideoWorkload& w, int step, nb::ndarray<float, nb::c_contig, nb::device::cpu> q,
             nb::ndarray<float, nb::c_contig, nb::device::cpu> k, nb::ndarray<float, nb::c_contig, nb::device::cpu> v) {
            const auto& c = w.config();
            const std::size_t n = std::size_t(c.tokens()) * std::size_t(c.heads) * std::size_t(c.head_dim);
            for (auto* a : {&q, &k, &v})
              if (a->size() != n)
                fail("generate", "expected float32 C-contiguous CPU arrays of (1, L, H, D) = " + std::to_string(n) + " elements");
            if (step < 0 || step >= c.steps)
              fail("step", "expected 0 <= step < " + std::to_string(c.steps) + ", got " + std::to_string(step));
            nb::gil_scoped_release release;
            w.generate(step, q.data(), k.data(), v.data());
          },
          "step"_a, "q"_a, "k"_a, "v"_a, "Fills float32 (1, L, H, D) q, k, v for a step.");
}
