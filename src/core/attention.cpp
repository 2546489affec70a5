// Dispatch: picks the backend for the tensors' device, resolves the plan, runs.
#include "liteattn/attention.hpp"

#include <algorithm>

#include "core/backends.hpp"
#include "liteattn/error.hpp"
#include "plan.hpp"
#include "sm90/tile_config.hpp"

namespace liteattn {

std::string_view to_string(Backend backend) {
  switch (backend) {
    case Backend::cpu: return "cpu";
    case Backend::sm90: return "sm90";
    case Backend::sm80: return "sm80";
  }
  return "unknown";
}

bool cuda_available() {
#if defined(LITEATTN_WITH_CUDA)
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

#if defined(LITEATTN_WITH_CUDA)
namespace {

// The portable kernel needs the m16n8k16 bf16/fp16 MMA and cp.async of compute capability 8.0.
constexpr int kPortableMinCapability = 80;
constexpr int kHopperCapability = 90;

std::string capability_string(int capability) {
  return std::to_string(capability / 10) + "." + std::to_string(capability % 10);
}

}  // namespace
#endif

std::vector<Backend> available_backends(const Device& device) {
  if (device.kind == DeviceKind::cpu) return {Backend::cpu};
  std::vector<Backend> backends;
#if defined(LITEATTN_WITH_CUDA)
  const int count = cuda_device_count();
  if (device.index < 0 || device.index >= count)
    throw ArgumentError("device", "expected a GPU index in [0, " + std::to_string(count) + "), got " +
                                      std::to_string(device.index));
  const int capability = cuda_device_capability(device.index);
  if (capability == kHopperCapability) backends.push_back(Backend::sm90);
  if (capability >= kPortableMinCapability) backends.push_back(Backend::sm80);
#else
  throw ArgumentError("device", "expected the CPU: this build of liteattn has no CUDA support, got " + to_string(device));
#endif
  return backends;
}

std::vector<Backend> available_backends() {
  // The CPU reference, then each GPU kernel that serves at least one visible GPU (a machine may
  // mix GPU generations).
  std::vector<Backend> backends{Backend::cpu};
#if defined(LITEATTN_WITH_CUDA)
  const int count = cuda_device_count();
  for (Backend kernel : {Backend::sm90, Backend::sm80})
    for (int index = 0; index < count; ++index) {
      const auto on_device = available_backends(Device{DeviceKind::cuda, index});
      if (std::find(on_device.begin(), on_device.end(), kernel) != on_device.end()) {
        backends.push_back(kernel);
        break;
      }
    }
#endif
  return backends;
}

Backend select_backend(const AttentionArgs& args) {
  const bool on_cpu = args.q.device.kind == DeviceKind::cpu;
  if (on_cpu) {
    if (args.backend && *args.backend != Backend::cpu)
      throw ArgumentError("backend", "expected 'cpu' for CPU tensors, got '" + std::string(to_string(*args.backend)) + "'");
    return Backend::cpu;
  }
  if (args.backend == Backend::cpu)
    throw ArgumentError("backend", "the CPU reference needs CPU tensors; these are on " + to_string(args.q.device));
#if defined(LITEATTN_WITH_CUDA)
  // Cached per device: no runtime query per call (the count is read only for a new index).
  const int capability = cuda_device_capability(args.q.device.index);
  if (capability == 0)
    throw ArgumentError("q", "expected a GPU index in [0, " + std::to_string(cuda_device_count()) + "), got " +
                                 to_string(args.q.device));
  const bool hopper = capability == kHopperCapability, portable = capability >= kPortableMinCapability;
  if (args.backend == Backend::sm90 && !hopper)
    throw ArgumentError("backend", "the Hopper kernel 'sm90' needs compute capability 9.0, this GPU has " +
                                       capability_string(capability));
  if (args.backend == Backend::sm80 && !portable)
    throw ArgumentError("backend", "the portable kernel 'sm80' needs compute capability 8.0 or newer, this GPU has " +
                                       capability_string(capability));
  if (args.backend) return *args.backend;
  if (hopper) return sm90_serves_shape(args) ? Backend::sm90 : Backend::sm80;
  if (portable) return Backend::sm80;
  throw UnsupportedError("no liteattn kernel for this GPU (compute capability " + capability_string(capability) +
                         "): the kernels need 8.0 or newer");
#else
  throw UnsupportedError("this build of liteattn has no CUDA support (rebuild with nvcc available)");
#endif
}

TileShape tile_shape(Backend, std::int64_t head_dim, DType) {
  // One tile shape per head dim for every backend (the CPU reference by default), so masks are
  // interchangeable; the portable kernel is built for the same shapes.
  return sm90::tile_shape_for_head_dim(head_dim);
}

StateKey state_key(const AttentionArgs& args) {
  StateKey key;
  key.batch = args.q.shape[0];
  key.len_q = args.q.shape[1];
  key.heads = args.q.shape[2];
  key.head_dim = args.q.shape[3];
  key.len_k = args.k.shape[1];
  key.dtype = args.q.dtype;
  key.device = args.q.device;
  // Every backend uses the same tile shapes; the CPU reference may be given another.
  const bool cpu_tile = args.q.device.kind == DeviceKind::cpu && args.cpu_tile;
  key.tile = cpu_tile ? *args.cpu_tile : tile_shape(Backend::cpu, key.head_dim, key.dtype);
  key.with_row_max = args.skip.criterion == Criterion::previous;
  return key;
}

void attention(const AttentionArgs& args) {
  const Backend backend = validate_and_select(args);
  const CallPlan plan = make_plan(args, backend);
  switch (backend) {
    case Backend::cpu: return run_cpu(args, plan);
    case Backend::sm90:
#if defined(LITEATTN_WITH_CUDA)
      return run_sm90(args, plan);
#endif
      break;
    case Backend::sm80:
#if defined(LITEATTN_WITH_CUDA)
      return run_sm80(args, plan);
#endif
      break;
  }
  throw UnsupportedError("backend not built");
}

void attention(AttentionArgs args, SkipState& state) {
  if (args.skip.enabled) {
    // Validate everything but the state first, so a rejected call leaves the state untouched.
    validate_without_state(args);
    state.prepare(state_key(args), args.stream);
    args.state = state.view();
  }
  attention(args);
}

}  // namespace liteattn
