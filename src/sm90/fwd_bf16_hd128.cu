// Explicit instantiation of the Hopper kernel for bf16, head dim 128.
#include "sm90/launch.cuh"

namespace liteattn::sm90 {
template void launch_attention<cutlass::bfloat16_t, 128>(const AttentionArgs&, const CallPlan&, const LaunchInfo&);
}  // namespace liteattn::sm90
