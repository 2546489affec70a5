// Host side of one portable-kernel instantiation: parameters, launch on args.stream. Included by
// the per-head-dim instantiation files only.
#pragma once

#include <cuda_runtime.h>

#include <atomic>

#include "cuda/runtime.hpp"
#include "sm80/kernel.cuh"
#include "sm80/launch.hpp"

namespace liteattn::sm80 {

inline Strides strides_of(const TensorView& t) { return {t.stride[0], t.stride[1], t.stride[2]}; }

template <class Element, int kHeadDim>
void launch_attention(const AttentionArgs& args, const CallPlan& plan) {
  using Config = KernelConfig<Element, kHeadDim>;
  Params params{};
  params.plan = plan;
  params.q = args.q.data;
  params.k = args.k.data;
  params.v = args.v.data;
  params.out = args.out.data;
  params.q_strides = strides_of(args.q);
  params.k_strides = strides_of(args.k);
  params.v_strides = strides_of(args.v);
  params.out_strides = strides_of(args.out);
  params.lse = args.lse.defined() ? static_cast<float*>(args.lse.data) : nullptr;  // contiguous (validate)
  params.len_q = std::int32_t(plan.len_q);
  params.len_k = std::int32_t(plan.len_k);
  params.heads = std::int32_t(plan.heads);
  params.group = std::int32_t(plan.heads / plan.kv_heads);
  if (plan.skipping) params.state = cuda::SkipStatePointers::of(args.state);

  auto kernel = attention_fwd_kernel<Config>;
  static std::atomic<bool> shared_memory_raised[64] = {};
  cuda::raise_shared_memory_limit(kernel, Config::kSharedBytes, args.q.device.index, shared_memory_raised);

  auto stream = static_cast<cudaStream_t>(args.stream);
  // The kept counts start at zero; the work-tile counter and order after them are the Hopper
  // kernel's and stay as they are.
  if (plan.skipping)
    LITEATTN_CUDA_CHECK(cudaMemsetAsync(args.state.kept, 0, std::size_t(args.state.key.work_counter_offset()) * 4, stream));
  const auto work_tiles = static_cast<unsigned>(plan.batch * plan.heads * plan.q_tiles);
  kernel<<<work_tiles, Config::kThreads, Config::kSharedBytes, stream>>>(params);
  LITEATTN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace liteattn::sm80
