// Declarations shared by the portable kernel's dispatcher (launch.cu) and its per-head-dim
// instantiation files.
#pragma once

#include "core/backends.hpp"
#include "core/plan.hpp"

namespace liteattn::sm80 {

// Defined in fwd_hd<dim>.cu for Element = __nv_bfloat16 and __half.
template <class Element, int kHeadDim>
void launch_attention(const AttentionArgs& args, const CallPlan& plan);

}  // namespace liteattn::sm80
