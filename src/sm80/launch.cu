// The portable backend's entry point: checks what only this kernel needs, picks the
// instantiation and launches it on args.stream. No allocation, no sync.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/backends.hpp"
#include "cuda/operand_rules.hpp"
#include "cuda/runtime.hpp"
#include "liteattn/error.hpp"
#include "sm80/launch.hpp"
#include "sm90/tile_config.hpp"

namespace liteattn {
namespace {

constexpr const char* kKernel = "portable kernel";

void check_chunk_loads(const TensorView& t, const char* name) {
  if (std::string why = cuda::chunk_load_violation(t, kKernel); !why.empty()) throw ArgumentError(name, why);
}

}  // namespace

void check_sm80_args(const AttentionArgs& args) {
  cuda::check_32_bit_indexing(args, sm90::tile_shape_for_head_dim(args.q.shape[3]), kKernel);
  check_chunk_loads(args.q, "q");
  check_chunk_loads(args.k, "k");
  check_chunk_loads(args.v, "v");
  cuda::check_pair_stores(args.out, kKernel);
}

// Arguments passed validate() and check_sm80_args() before any state was touched.
void run_sm80(const AttentionArgs& args, const CallPlan& plan) {
  if (plan.tile != sm90::tile_shape_for_head_dim(plan.head_dim))
    throw UnsupportedError("the plan's tile shape does not match the portable kernel's");
  cuda::DeviceGuard guard(args.q.device.index);
  const bool bf16 = args.q.dtype == DType::bf16;
  if (plan.head_dim == 64) {
    if (bf16) sm80::launch_attention<__nv_bfloat16, 64>(args, plan);
    else sm80::launch_attention<__half, 64>(args, plan);
  } else {
    if (bf16) sm80::launch_attention<__nv_bfloat16, 128>(args, plan);
    else sm80::launch_attention<__half, 128>(args, plan);
  }
}

}  // namespace liteattn
