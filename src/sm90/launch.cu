// The Hopper backend's entry point: checks what only this kernel needs (TMA alignment, mask
// width), picks the instantiation and launches it on args.stream. No allocation, no sync.
#include <cstdlib>
#include <string>

#include <cutlass/numeric_types.h>

#include "cuda/runtime.hpp"
#include "liteattn/error.hpp"
#include "sm90/launch.hpp"
#include "sm90/tile_config.hpp"

namespace liteattn {
namespace {

// TMA reads tiles through a descriptor whose base address must be 16-byte aligned and whose
// strides must be multiples of 16 bytes. Strides of size-1 dimensions are never used and are
// zeroed, so views with arbitrary strides there (common in frameworks) are accepted.
TensorView tma_view(const TensorView& t, const char* name) {
  TensorView view = t;
  const auto element = static_cast<std::int64_t>(dtype_size(t.dtype));
  if (reinterpret_cast<std::uintptr_t>(t.data) % 16 != 0)
    throw ArgumentError(name, "the Hopper kernel needs a 16-byte aligned base address (TMA)");
  for (int d = 0; d < 3; ++d) {
    if (view.shape[d] == 1) {
      view.stride[d] = 0;
      continue;
    }
    if ((view.stride[d] * element) % 16 != 0)
      throw ArgumentError(name, "the Hopper kernel needs strides that are multiples of 16 bytes (TMA); dimension " +
                                    std::to_string(d) + " has stride " + std::to_string(view.stride[d]) + " elements");
    if (view.stride[d] * element >= (std::int64_t(1) << 40))
      throw ArgumentError(name, "stride of dimension " + std::to_string(d) + " exceeds the TMA limit of 2^40 bytes");
  }
  return view;
}

}  // namespace

void run_sm90(const AttentionArgs& args, const CallPlan& plan) {
  if (plan.head_dim != 64 && plan.head_dim != 128)
    throw UnsupportedError("the Hopper kernel supports head_dim 64 and 128, got " + std::to_string(plan.head_dim));
  if (args.q.dtype != DType::bf16 && args.q.dtype != DType::f16)
    throw UnsupportedError("the Hopper kernel supports bfloat16 and float16 inputs");
  if (plan.tile != sm90::tile_shape_for_head_dim(plan.head_dim))
    throw UnsupportedError("the plan's tile shape does not match the Hopper kernel's");
  // The visit list (dense calls too) and the votes of a query tile live in shared memory.
  if (plan.k_tiles > std::int64_t(sm90::kMaxMaskWords) * 32)
    throw UnsupportedError("the Hopper kernel supports at most " + std::to_string(sm90::kMaxMaskWords * 32) +
                           " key tiles (Lk up to " + std::to_string(std::int64_t(sm90::kMaxMaskWords) * 32 * plan.tile.n) +
                           "), got Lk = " + std::to_string(plan.len_k));
  if (plan.len_q >= (std::int64_t(1) << 31) || plan.len_k >= (std::int64_t(1) << 31) ||
      plan.batch * plan.heads * plan.q_tiles >= (std::int64_t(1) << 31))
    throw UnsupportedError("the Hopper kernel indexes sequences and work tiles with 32-bit integers");

  AttentionArgs checked = args;
  checked.q = tma_view(args.q, "q");
  checked.k = tma_view(args.k, "k");
  checked.v = tma_view(args.v, "v");
  // The epilogue writes two adjacent elements per 4-byte store.
  if (reinterpret_cast<std::uintptr_t>(args.out.data) % 4 != 0 || args.out.stride[0] % 2 != 0 ||
      args.out.stride[1] % 2 != 0 || args.out.stride[2] % 2 != 0)
    throw ArgumentError("out", "the Hopper kernel needs a 4-byte aligned base address and even strides");

  const int device = args.q.device.index;
  cuda::DeviceGuard guard(device);
  sm90::LaunchInfo info;
  info.stream = args.stream;
  info.sm_count = cuda::sm_count(device);
  info.device = device;
  // Experiment knob for the benchmark notes (bench/NOTES.md): LITEATTN_SM90_WG_SCHEDULE=0 turns
  // the consumer warpgroups' turn-taking off. Read once.
  static const bool schedule = [] {
    const char* v = std::getenv("LITEATTN_SM90_WG_SCHEDULE");
    return !(v && v[0] == '0');
  }();
  info.schedule_warpgroups = schedule;

  const bool bf16 = args.q.dtype == DType::bf16;
  if (plan.head_dim == 64) {
    if (bf16) sm90::launch_attention<cutlass::bfloat16_t, 64>(checked, plan, info);
    else sm90::launch_attention<cutlass::half_t, 64>(checked, plan, info);
  } else {
    if (bf16) sm90::launch_attention<cutlass::bfloat16_t, 128>(checked, plan, info);
    else sm90::launch_attention<cutlass::half_t, 128>(checked, plan, info);
  }
}

}  // namespace liteattn
