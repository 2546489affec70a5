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
// What only the Hopper kernel requires (TMA alignment, sequence limits); validate() calls it for
// CUDA tensors, before any state is prepared, so a rejected call changes nothing.
void check_sm90_args(const AttentionArgs& args);
// Whether the Hopper kernel's size limits admit these tensors (key tiles in its shared-memory
// lists, TMA strides below 2^40 bytes); where not, Hopper GPUs fall back to the portable kernel.
bool sm90_serves_shape(const AttentionArgs& args);
// src/sm80: the portable kernel (sm_80 and newer), same contract and tile shapes.
void run_sm80(const AttentionArgs& args, const CallPlan& plan);
// What only the portable kernel requires (16-byte aligned rows, 32-bit indexing).
void check_sm80_args(const AttentionArgs& args);
// src/cuda: state initialisation and the few runtime calls the core needs (src/cuda/runtime.cpp).
void reset_state_cuda(const SkipStateView& view, void* stream);
int cuda_device_count();                 // 0 when no driver or no device
int cuda_device_capability(int device);  // e.g. 90 for sm_90; 0 for an index past the last GPU
void* cuda_allocate(std::size_t bytes, int device);
void cuda_release(void* ptr, int device);
void cuda_copy_to_host(void* host, const void* device_ptr, std::size_t bytes, int device);
#endif

}  // namespace liteattn
