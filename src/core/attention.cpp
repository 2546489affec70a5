// Dispatch: picks the backend for the tensors' device, resolves the plan, runs.
#include "liteattn/attention.hpp"

#include "core/backends.hpp"
#include "liteattn/error.hpp"
#include "plan.hpp"
#include "sm90/tile_config.hpp"

namespace liteattn {

std::string_view to_string(Backend backend) { return backend == Backend::cpu ? "cpu" : "sm90"; }

bool cuda_available() {
#if defined(LITEATTN_WITH_CUDA)
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

std::vector<Backend> available_backends() {
  std::vector<Backend> backends{Backend::cpu};
#if defined(LITEATTN_WITH_CUDA)
  if (cuda_available() && cuda_device_capability(0) == 90) backends.push_back(Backend::sm90);
#endif
  return backends;
}

Backend select_backend(const AttentionArgs& args) {
  if (args.q.device.kind == DeviceKind::cpu) return Backend::cpu;
#if defined(LITEATTN_WITH_CUDA)
  const int capability = cuda_device_capability(args.q.device.index);
  if (capability == 90) return Backend::sm90;
  throw UnsupportedError("no liteattn kernel for this GPU (compute capability " + std::to_string(capability / 10) + "." +
                         std::to_string(capability % 10) + "): the Hopper kernel needs sm_90; the portable kernel is not built yet");
#else
  throw UnsupportedError("this build of liteattn has no CUDA support (rebuild with nvcc available)");
#endif
}

TileShape tile_shape(Backend, std::int64_t head_dim, DType) {
  // The CPU reference defaults to the Hopper kernel's shape so that masks are interchangeable.
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
  const Backend backend = args.q.device.kind == DeviceKind::cpu ? Backend::cpu : Backend::sm90;
  key.tile = (backend == Backend::cpu && args.cpu_tile) ? *args.cpu_tile : tile_shape(backend, key.head_dim, key.dtype);
  key.with_row_max = args.skip.criterion == Criterion::previous;
  return key;
}

void attention(const AttentionArgs& args) {
  validate(args);
  const Backend backend = select_backend(args);
  const CallPlan plan = make_plan(args, backend);
  switch (backend) {
    case Backend::cpu: return run_cpu(args, plan);
    case Backend::sm90:
#if defined(LITEATTN_WITH_CUDA)
      return run_sm90(args, plan);
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
