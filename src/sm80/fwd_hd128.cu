// Explicit instantiations of the portable kernel for head dim 128 (bf16 and fp16).
#include "sm80/launch.cuh"

namespace liteattn::sm80 {
template void launch_attention<__nv_bfloat16, 128>(const AttentionArgs&, const CallPlan&);
template void launch_attention<__half, 128>(const AttentionArgs&, const CallPlan&);
}  // namespace liteattn::sm80
