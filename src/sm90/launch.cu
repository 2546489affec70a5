// The Hopper backend's entry point: checks what only this kernel needs (TMA alignment, mask
// width), picks the instantiation and launches it on args.stream. No allocation, no sync.
#include <cstdlib>
#include <string>

#include <cutlass/numeric_types.h>

#include "core/backends.hpp"
#include "cuda/operand_rules.hpp"
#include "cuda/runtime.hpp"
#include "liteattn/error.hpp"
#include "sm90/launch.hpp"
#include "sm90/tile_config.hpp"

namespace liteattn {
namespace {

constexpr const char* kKernel = "Hopper kernel";

// The TMA addresses tiles through a descriptor: the 16-byte chunk rules of both kernels, and
// strides below 2^40 bytes. The first rule t breaks, or an empty string.
std::string tma_violation(const TensorView& t) {
  if (std::string why = cuda::chunk_load_violation(t, kKernel); !why.empty()) return why;
  const auto element = static_cast<std::int64_t>(dtype_size(t.dtype));
  for (int d = 0; d < 3; ++d)
    if (t.shape[d] != 1 && t.stride[d] * element >= (std::int64_t(1) << 40))
      return "stride of dimension " + std::to_string(d) + " exceeds the TMA limit of 2^40 bytes";
  return {};
}

void check_tma_operand(const TensorView& t, const char* name) {
  if (std::string why = tma_violation(t); !why.empty()) throw ArgumentError(name, why);
}

// Strides of size-1 dimensions are zeroed, so views with arbitrary strides there (common in
// frameworks) give valid TMA descriptors.
TensorView tma_view(const TensorView& t) {
  TensorView view = t;
  for (int d = 0; d < 3; ++d)
    if (view.shape[d] == 1) view.stride[d] = 0;
  return view;
}

}  // namespace

bool sm90_serves_shape(const AttentionArgs& args) {
  const TileShape tile = sm90::tile_shape_for_head_dim(args.q.shape[3]);
  if (ceil_div(args.k.shape[1], tile.n) > std::int64_t(sm90::kMaxMaskWords) * 32) return false;
  for (const TensorView* t : {&args.q, &args.k, &args.v})
    for (int d = 0; d < 3; ++d)
      if (t->shape[d] != 1 && t->stride[d] * std::int64_t(dtype_size(t->dtype)) >= (std::int64_t(1) << 40)) return false;
  return true;
}

void check_sm90_args(const AttentionArgs& args) {
  const std::int64_t head_dim = args.q.shape[3], len_k = args.k.shape[1];
  const TileShape tile = sm90::tile_shape_for_head_dim(head_dim);
  const std::int64_t k_tiles = ceil_div(len_k, tile.n);
  // The visit list (dense calls too) and the votes of a query tile live in shared memory.
  if (k_tiles > std::int64_t(sm90::kMaxMaskWords) * 32)
    throw UnsupportedError("the Hopper kernel supports at most " + std::to_string(sm90::kMaxMaskWords * 32) +
                           " key tiles (Lk up to " + std::to_string(std::int64_t(sm90::kMaxMaskWords) * 32 * tile.n) +
                           "), got Lk = " + std::to_string(len_k));
  cuda::check_32_bit_indexing(args, tile, kKernel);
  check_tma_operand(args.q, "q");
  check_tma_operand(args.k, "k");
  check_tma_operand(args.v, "v");
  // Without the TMA store (out not TMA-aligned) the epilogue writes two elements at a time.
  cuda::check_pair_stores(args.out, kKernel);
}

// Arguments passed validate() and check_sm90_args() (attention() runs both before any state is
// touched), so only the dispatch is left here.
void run_sm90(const AttentionArgs& args, const CallPlan& plan) {
  if (plan.tile != sm90::tile_shape_for_head_dim(plan.head_dim))
    throw UnsupportedError("the plan's tile shape does not match the Hopper kernel's");
  AttentionArgs checked = args;
  checked.q = tma_view(args.q);
  checked.k = tma_view(args.k);
  checked.v = tma_view(args.v);
  checked.out = tma_view(args.out);

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
  // out is written with the TMA where it can be (else from registers, 4 bytes at a time).
  info.store_out_with_tma = tma_violation(checked.out).empty();

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
