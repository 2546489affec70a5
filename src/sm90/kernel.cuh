// The Hopper (sm_90a) LiteAttention forward kernel.
//
// Design (FlashAttention-3 family, written for this project):
// - Persistent grid: one CTA per SM walks the work tiles (b, h, query tile): round-robin in
//   dense calls; in skipping calls, where work tiles hold different numbers of key tiles, each
//   CTA takes its next work tile from a per-call counter, so none is left with most of the work,
//   in an order that a small kernel before it writes (work_order.hpp): heads with the most kept
//   tiles first, each head's query tiles together, the last rounds largest work first, so that
//   the CTAs also run out of work together. A CTA's first work tile (CTA b: work tile b) runs
//   while that order is written.
// - Warp specialization: warpgroup 0 is the producer (registers given back with setmaxnreg):
//   its warp 0 issues the TMA loads, its warp 1 owns the skip state, its warp 2 stores O.
//   Warpgroups 1 and 2 are consumers (64 query rows each, wgmma, online softmax, skip votes;
//   registers raised).
// - K and V flow through a multi-stage shared-memory pipeline (mbarriers, PipelineTmaAsync).
//   The skip-state warp turns each work tile's skip policy into a list of the key tiles it
//   visits (32 positions per step, ballot + popc) in a shared-memory slot, up to two work tiles
//   ahead; the load warp loads only those tiles, so a skipped tile is never loaded, and the
//   consumers read the same list, so all sides see the same sequence and none scans skipped bits
//   one by one.
// - QK^T is an SS wgmma (Q and K from shared memory); PV is an RS wgmma (P from registers,
//   V^T read MN-major straight from the TMA-written tile, no transpose).
// - Intra-warpgroup overlap: the QK^T of tile n+1 and the PV of tile n are in flight while the
//   softmax of tile n+1 runs.
// - The skip test costs one compare per row and tile (the row max is already needed by the
//   softmax) and a warp vote; each warp ORs its votes into the slot once per 32 visit positions.
//   When the consumers are done with a work tile, the skip-state warp maps the votes to key tiles
//   and writes the mask row, so skip-state memory never stalls a load or a consumer.
// - Q is double-buffered: a work tile's Q loads while the previous one computes. The consumers
//   stage O in the Q buffer after their last QK^T and go on to the next work tile; the store
//   warp writes the staged tile out with the TMA and then gives the buffer back to the load
//   warp. (When out is not 16-byte aligned the consumers store O from registers, 4 bytes at a
//   time, and the store warp only passes the buffer on.)
#pragma once

#include "sm90/consumer.cuh"
#include "sm90/kernel_traits.cuh"
#include "sm90/producer.cuh"

namespace liteattn::sm90 {

// Sets up the barriers and pipelines, then hands each warp its role.
template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    attention_fwd_kernel(const __grid_constant__ Params<Traits> params) {
  using Pipeline = typename Traits::Pipeline;
  constexpr int kMmaThreads = Traits::kMmaThreads;
  constexpr int kWarp = cutlass::NumThreadsPerWarp;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& shared = *reinterpret_cast<typename Traits::SharedStorage*>(smem_raw);

  const CallPlan& plan = params.plan;
  const int warp = cutlass::canonical_warp_idx_sync();
  const int warpgroup = cutlass::canonical_warp_group_idx();
  const int lane = threadIdx.x % kWarp;
  const int32_t q_tiles = int32_t(plan.q_tiles);
  const int32_t k_tiles = int32_t(plan.k_tiles);
  const int64_t state_rows = plan.batch * plan.heads * plan.q_tiles;
  const int32_t words = int32_t(plan.words);
  const bool skipping = plan.skipping;  // reads and writes the skip state

  if (warp == 0 && lane == 0) {
    cute::prefetch_tma_descriptor(params.tma_q.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_k.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_v.get_tma_descriptor());
    for (int i = 0; i < 2; ++i) {
      cutlass::arch::ClusterTransactionBarrier::init(&shared.q_full[i], 1);
      cutlass::arch::ClusterBarrier::init(&shared.o_staged[i], kMmaThreads);
      cutlass::arch::ClusterBarrier::init(&shared.q_empty[i], 1);
    }
    for (int i = 0; i < Traits::SharedStorage::kLists; ++i) {
      cutlass::arch::ClusterBarrier::init(&shared.list_full[i], kWarp);
      cutlass::arch::ClusterBarrier::init(&shared.list_empty[i], kMmaThreads + 2 * kWarp);
    }
  }

  typename Pipeline::Params pipe_params;
  pipe_params.role = warpgroup == 0 ? Pipeline::ThreadCategory::Producer : Pipeline::ThreadCategory::Consumer;
  pipe_params.is_leader = threadIdx.x == 0;
  pipe_params.num_consumers = kMmaThreads;
  pipe_params.transaction_bytes = Traits::kBytesK;
  Pipeline pipeline_k(shared.pipeline_k, pipe_params, Shape<_1, _1, _1>{});
  pipe_params.transaction_bytes = Traits::kBytesV;
  Pipeline pipeline_v(shared.pipeline_v, pipe_params, Shape<_1, _1, _1>{});
  __syncthreads();

  const Cta<Traits> cta{params, shared, plan, lane, q_tiles, k_tiles, words, state_rows, skipping};
  if (warpgroup == 0) {
    // The producer gives registers back to the consumers; its warps 0-2 take one role each.
    cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegisters>();
    if (warp == 0) cta.load_warp(pipeline_k, pipeline_v);
    else if (warp == 1) cta.skip_state_warp();
    else if (warp == 2) cta.store_warp();
    return;
  }
  cta.consumer_warpgroups(pipeline_k, pipeline_v);
}

}  // namespace liteattn::sm90
