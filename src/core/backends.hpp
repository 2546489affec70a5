// The backends the core dispatches to. Each implements method.md for validated arguments and
// a resolved plan; none allocates, synchronizes or launches on a stream other than args.stream.
#pragma once

#include "liteattn/attention.hpp"
#include "plan.hpp"

namespace liteattn {

// src/cpu: the reference.
void run_cpu(const AttentionArgs& args, const CallPlan& plan);
void reset_state_cpu(const SkipStateView& view);

#if defined(LITEATTN_WITH_CUDA)
// src/sm90: the Hopper kernel (sm_90a). Throws UnsupportedError for head dims / dtypes it lacks.
void run_sm90(const AttentionArgs& args, const CallPlan& plan);
// src/cuda_common: state initialisation and small helpers on CUDA devices.
void reset_state_cuda(const SkipStateView& view, void* stream);
#endif

}  // namespace liteattn
