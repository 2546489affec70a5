// Host side of one kernel instantiation: TMA descriptors, parameters, launch. Included by the
// per-(dtype, head dim) translation units only.
#pragma once

#include <cuda_runtime.h>

#include <atomic>

#include "cuda/runtime.hpp"
#include "sm90/kernel.cuh"
#include "sm90/launch.hpp"
#include "sm90/launch_grid.hpp"
#include "sm90/work_order.hpp"

namespace liteattn::sm90 {

template <class Element, int kHeadDim>
void launch_attention(const AttentionArgs& args, const CallPlan& plan, const LaunchInfo& info) {
  using Traits = KernelTraits<Element, kHeadDim>;
  using T = Traits;
  Params<Traits> params{};

  const int32_t len_q = int32_t(plan.len_q), len_k = int32_t(plan.len_k);
  const int32_t heads = int32_t(plan.heads), kv_heads = int32_t(plan.kv_heads), batch = int32_t(plan.batch);

  // Q and K: (seq, dim, head, batch) with the TensorView's (B, L, H, D) strides.
  auto q = make_tensor(make_gmem_ptr(static_cast<Element const*>(args.q.data)),
                       make_shape(len_q, int32_t(kHeadDim), heads, batch),
                       make_stride(args.q.stride[1], _1{}, args.q.stride[2], args.q.stride[0]));
  auto k = make_tensor(make_gmem_ptr(static_cast<Element const*>(args.k.data)),
                       make_shape(len_k, int32_t(kHeadDim), kv_heads, batch),
                       make_stride(args.k.stride[1], _1{}, args.k.stride[2], args.k.stride[0]));
  // V^T: (dim, seq, head, batch), the head dim contiguous.
  auto vt = make_tensor(make_gmem_ptr(static_cast<Element const*>(args.v.data)),
                        make_shape(int32_t(kHeadDim), len_k, kv_heads, batch),
                        make_stride(_1{}, args.v.stride[1], args.v.stride[2], args.v.stride[0]));
  params.tma_q = make_tma_copy(SM90_TMA_LOAD{}, q, take<0, 2>(typename T::SmemLayoutQ{}),
                               Shape<Int<T::kBlockM>, Int<kHeadDim>>{}, _1{});
  params.tma_k = make_tma_copy(SM90_TMA_LOAD{}, k, take<0, 2>(typename T::SmemLayoutK{}),
                               Shape<Int<T::kBlockN>, Int<kHeadDim>>{}, _1{});
  params.tma_v = make_tma_copy(SM90_TMA_LOAD{}, vt, take<0, 2>(typename T::SmemLayoutVt{}),
                               Shape<Int<kHeadDim>, Int<T::kBlockN>>{}, _1{});

  params.plan = plan;
  params.len_q = len_q;
  params.len_k = len_k;
  params.heads = heads;
  params.kv_heads = kv_heads;
  params.batch = batch;
  params.group = heads / kv_heads;
  params.num_work_tiles = int32_t(plan.batch * plan.heads * plan.q_tiles);
  params.out = args.out.data;
  params.out_stride_b = args.out.stride[0];
  params.out_stride_l = args.out.stride[1];
  params.out_stride_h = args.out.stride[2];
  params.store_out_with_tma = info.store_out_with_tma;
  if (params.store_out_with_tma) {
    auto out = make_tensor(make_gmem_ptr(static_cast<Element*>(args.out.data)),
                           make_shape(len_q, int32_t(kHeadDim), heads, batch),
                           make_stride(args.out.stride[1], _1{}, args.out.stride[2], args.out.stride[0]));
    params.tma_o = make_tma_copy(SM90_TMA_STORE{}, out, typename T::SmemLayoutOBox{},
                                 Shape<Int<T::kBlockM>, Int<T::kBoxColumnsO>>{}, _1{});
  }
  if (args.lse.defined()) {
    params.lse = static_cast<float*>(args.lse.data);
    params.lse_stride_b = args.lse.stride[0];
    params.lse_stride_h = args.lse.stride[1];
    params.lse_stride_l = args.lse.stride[2];
  }
  if (plan.skipping) {
    params.state = cuda::SkipStatePointers::of(args.state);
    // Skipping calls leave uneven work per work tile: CTAs take work tiles from a counter, in
    // the order enqueue_work_order writes.
    params.work_counter = args.state.kept + args.state.key.work_counter_offset();
    params.work_order = args.state.kept + args.state.key.work_order_offset();
  }

  params.schedule_warpgroups = info.schedule_warpgroups;

  auto kernel = attention_fwd_kernel<Traits>;
  static std::atomic<bool> shared_memory_raised[64] = {};
  cuda::raise_shared_memory_limit(kernel, T::kSharedBytes, info.device, shared_memory_raised);

  auto stream = static_cast<cudaStream_t>(info.stream);
  const int grid = int(launch_grid(params.num_work_tiles, info.sm_count, !plan.skipping));
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(grid));
  config.blockDim = dim3(unsigned(T::kThreads));
  config.dynamicSmemBytes = T::kSharedBytes;
  config.stream = stream;
  cudaLaunchAttribute after_work_order{};
  if (plan.skipping) {
    enqueue_work_order(args.state, plan, grid, stream);  // also zeroes the kept counts, sets the counter
    // The kernel may launch while the work order is still being written (programmatic dependent
    // launch): its CTAs set up and run their first work tiles, and the skip-state warp waits for
    // the order (griddepcontrol.wait) before it takes a position from it.
    after_work_order.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    after_work_order.val.programmaticStreamSerializationAllowed = 1;
    config.attrs = &after_work_order;
    config.numAttrs = 1;
  }
  LITEATTN_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, params));
  LITEATTN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace liteattn::sm90
