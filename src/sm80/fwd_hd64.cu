// Explicit instantiations of the portable kernel for head dim 64 (bf16 and fp16).
#include "sm80/launch.cuh"

namespace liteattn::sm80 {
template void launch_attention<__nv_bfloat16, 64>(const AttentionArgs&, const CallPlan&);
template void launch_attention<__half, 64>(const AttentionArgs&, const CallPlan&);
}  // namespace liteattn::sm80
