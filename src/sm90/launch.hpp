// Declarations shared by the Hopper dispatcher (launch.cu) and the per-(dtype, head dim)
// instantiation files. No CUTLASS here, so the dispatcher compiles quickly.
#pragma once

#include "core/backends.hpp"
#include "core/plan.hpp"

namespace liteattn::sm90 {

struct LaunchInfo {
  void* stream = nullptr;  // cudaStream_t
  int sm_count = 0;        // persistent grid size
  int device = 0;          // CUDA ordinal (current during the launch)
  bool schedule_warpgroups = true;  // alternate the consumer warpgroups' GEMM issue
  bool store_out_with_tma = false;  // out meets the TMA's alignment and stride rules
};

// Defined once per instantiation in fwd_<dtype>_hd<dim>.cu. Element is cutlass::bfloat16_t or
// cutlass::half_t.
template <class Element, int kHeadDim>
void launch_attention(const AttentionArgs& args, const CallPlan& plan, const LaunchInfo& info);

}  // namespace liteattn::sm90
