// The producer warpgroup's three warp roles: the skip-state warp fills each work tile's slot
// (visit list) and writes its mask row back, the load warp loads Q, K and V with the TMA, the
// store warp writes O out with the TMA. See kernel.cuh for how they meet the consumers.
#pragma once

#include "sm90/device_helpers.cuh"
#include "sm90/kernel_traits.cuh"

namespace liteattn::sm90 {

// Warp 1 of the producer warpgroup: owns the skip state.
template <class Traits>
__device__ __forceinline__ void Cta<Traits>::skip_state_warp() const {
  // A skipping call's work order, work-tile counter and kept counts come from the kernel before
  // this one (work_order.hpp), which may still be running; this warp is the only reader of them.
  // A CTA's first work tile needs none of them (CTA b runs work tile b), so it starts at once and
  // the order kernel runs alongside the first work tiles: the warp waits for it (griddepcontrol.wait,
  // a no-op in calls launched without that kernel) only after the first fill, before it adds a
  // kept count or takes a later position. (The order kernel reads the rows' read buffers and call
  // counters, row_visits; this kernel writes the other buffers and row_visits only when it drains
  // a slot, after that wait.)
  const int32_t stride = int32_t(gridDim.x);
  // Fills each work tile's slot (two work tiles ahead of the consumers) and writes its mask row
  // once the slot comes back, so neither the loads nor the consumers ever wait on the skip
  // state's global memory. At the producer's 24 registers the kernel spills 56 bytes of stores at
  // D = 64 and D = 128 (ptxas warns), all in the producer's code (SASS of be8bca5 at D = 128:
  // every STL lies after the producer's setmaxnreg.dealloc); the consumers spill nothing, and
  // their main loop is the same 724 instructions as before the work order.
  auto fill_slot = [&](int n, int32_t index) -> int32_t {
    const int slot = n % kLists;
    const WorkTile w = decode_work_tile(index, q_tiles, params.heads);
    const int64_t row = int64_t(w.bh) * q_tiles + w.m_block;
    uint32_t visits = 0;
    if (skipping) {
      // The row's call counter, then the whole read row in one round trip.
      visits = params.state.row_visits[row];
      const uint32_t* read_row = params.state.mask + ((visits & 1u) * state_rows + row) * words;
      for (int32_t word = lane; word < words; word += kWarp) {
        shared.read_mask[slot][word] = read_row[word];
        shared.votes[slot][word] = 0u;
      }
      if (lane == 0) shared.row_visits[slot] = visits;
      __syncwarp();
    }
    // The visit list: the policy evaluated 32 positions at a time, compacted in visit order
    // with a ballot.
    const QueryTilePolicy policy(plan, w.m_block, skipping ? shared.read_mask[slot] : nullptr, visits);
    int16_t* list = shared.visit_list[slot];
    int32_t count = 0;
    for (int32_t base = 0; base < k_tiles; base += kWarp) {
      const int32_t position = base + lane;
      int32_t tile = 0;
      bool visited = false;
      if (position < k_tiles) {
        tile = policy.tile_at(position);
        visited = policy.visits(tile);
      }
      const uint32_t ballot = __ballot_sync(0xffffffffu, visited);
      if (visited) list[count + __popc(ballot & ((1u << lane) - 1u))] = int16_t(tile);
      count += __popc(ballot);
    }
    if (lane == 0) {
      shared.work_index[slot] = index;
      shared.visit_count[slot] = count;
      shared.dense_row[slot] = policy.dense();
    }
    cutlass::arch::ClusterBarrier::arrive(&shared.list_full[slot]);  // all 32 lanes: release
    return count;
  };
  // The key tiles a work tile visits, added to its (batch, head) pair's counts.
  // (It decodes the work tile again: holding fill_slot's decoding across the fill costs spills at
  // the producer's 24 registers.)
  auto count_kept = [&](int32_t index, int32_t count) {
    if (!skipping || lane != 0) return;
    const int32_t bh = decode_work_tile(index, q_tiles, params.heads).bh;
    atomicAdd(&params.state.kept[bh], uint32_t(count));
    if (params.state.cumulative != nullptr) atomicAdd(&params.state.cumulative[bh], static_cast<unsigned long long>(count));
  };
  // Waits until the consumers and the load warp are done with the slot of work tile n (every
  // vote is in), then writes that work tile's mask row into the other buffer and advances
  // its call counter.
  auto drain_slot = [&](int n) {
    const int slot = n % kLists;
    cutlass::arch::ClusterBarrier::wait(&shared.list_empty[slot], (n / kLists) & 1);
    if (!skipping) return;
    const WorkTile w = decode_work_tile(shared.work_index[slot], q_tiles, params.heads);
    const int64_t row = int64_t(w.bh) * q_tiles + w.m_block;
    const uint32_t visits = shared.row_visits[slot];
    const bool dense_row = shared.dense_row[slot];
    // The new row is built where the read row was: writing needs only the policy's dense
    // flag and must_do, not the read bits. Tiles the call did not visit stay 0.
    uint32_t* new_row = shared.read_mask[slot];
    for (int32_t word = lane; word < words; word += kWarp) new_row[word] = 0u;
    __syncwarp();
    const int16_t* list = shared.visit_list[slot];
    const int32_t count = shared.visit_count[slot];
    for (int32_t base = 0; base < count; base += kWarp) {
      const int32_t position = base + lane;
      if (position >= count) break;
      const int32_t tile = list[position];
      const bool voted = (shared.votes[slot][base / kWarp] >> lane) & 1u;
      if (QueryTilePolicy::writes_keep(plan, dense_row, tile, voted)) atomicOr(&new_row[tile >> 5], 1u << (tile & 31));
    }
    __syncwarp();
    uint32_t* write_row = params.state.mask + ((1u - (visits & 1u)) * state_rows + row) * words;
    for (int32_t word = lane; word < words; word += kWarp) write_row[word] = new_row[word];
    if (lane == 0) params.state.row_visits[row] = visits + 1;
    __syncwarp();  // every lane is done with the slot before the next fill overwrites it
  };

  // Work tile n is taken (and its slot filled) once the consumers are done with work tile
  // n - 3, whose slot it reuses: two work tiles ahead of the consumers, so the fill's global
  // reads never hold up the load warp. Taking it one work tile later balances the CTAs
  // slightly better in simulation (7 % instead of 9 % over an even split at (8192, 40),
  // s = 0.9) but measured no faster on an H100 (bench/NOTES.md, run 11).
  constexpr int kLag = kLists;
  int32_t position = blockIdx.x;  // the first work tile of every CTA is static, in index order
  int n = 0;
  for (;; ++n) {
    if (n >= kLag) drain_slot(n - kLag);
    int32_t index = position;
    if (n > 0) {
      if (params.work_counter == nullptr) {
        position += stride;
        index = position;
      } else {
        // The counter starts past the first round's positions (work_order.hpp). L2 reads (__ldcg):
        // the order kernel wrote the order while this CTA was running.
        uint32_t taken = 0;
        if (lane == 0) taken = atomicAdd(params.work_counter, 1u);
        position = int32_t(__shfl_sync(0xffffffffu, taken, 0));
        index = position < params.num_work_tiles ? int32_t(__ldcg(params.work_order + position)) : position;
      }
    }
    if (position >= params.num_work_tiles) {
      // No more work: an end marker in the slot stops the load warp and the consumers.
      const int slot = n % kLists;
      if (lane == 0) shared.work_index[slot] = -1;
      cutlass::arch::ClusterBarrier::arrive(&shared.list_full[slot]);
      break;
    }
    const int32_t count = fill_slot(n, index);
    if (n == 0) asm volatile("griddepcontrol.wait;" ::: "memory");
    count_kept(index, count);
  }
  // n work tiles were filled; the last kLag - 1 of them are not drained yet (the end marker
  // went into the slot of work tile n - kLag, drained above).
  for (int m = n - kLag + 1 > 0 ? n - kLag + 1 : 0; m < n; ++m) drain_slot(m);
}

// Warp 2 of the producer warpgroup: stores O.
template <class Traits>
__device__ __forceinline__ void Cta<Traits>::store_warp() const {
  Tensor sQ = smem_q();
  // Follows the consumers through the work tiles: once both consumer warpgroups have
  // staged a work tile's O, it stores the tile with the TMA, waits until the TMA has read
  // the staged tile and hands the Q buffer back to the load warp. No consumer waits for a
  // store, and the stores run while the consumers compute the next work tile.
  Tensor mO = params.tma_o.get_tma_tensor(make_shape(params.len_q, int(kHeadDim), params.heads, params.batch));
  auto tma_o = params.tma_o.get_slice(_0{});
  for (int iteration = 0;; ++iteration) {
    const int slot = iteration % kLists;
    cutlass::arch::ClusterBarrier::wait(&shared.list_full[slot], (iteration / kLists) & 1);
    const int32_t index = shared.work_index[slot];
    cutlass::arch::ClusterBarrier::arrive(&shared.list_empty[slot]);  // only the index was needed
    if (index < 0) break;
    const int q_buffer = iteration & 1;
    cutlass::arch::ClusterBarrier::wait(&shared.o_staged[q_buffer], (iteration >> 1) & 1);
    if (params.store_out_with_tma && lane == 0) {
      const WorkTile w = decode_work_tile(index, q_tiles, params.heads);
      constexpr int kBox = Traits::kBoxColumnsO;
      CUTLASS_PRAGMA_UNROLL
      for (int c = 0; c < kHeadDim / kBox; ++c) {
        // Rows past len_q (a partial last query tile) are outside the tensor map: not stored.
        Tensor gO = local_tile(mO(_, _, w.h, w.b), Shape<Int<kBlockM>, Int<kBox>>{}, make_coord(w.m_block, c));
        Tensor sBox = make_tensor(make_smem_ptr(&sQ(0, c * kBox, q_buffer)), typename Traits::SmemLayoutOBox{});
        copy(params.tma_o, tma_o.partition_S(sBox), tma_o.partition_D(gO));
      }
      tma_store_arrive();
      tma_store_wait<0>();  // the TMA has read the staged tile (its writes complete on their own)
    }
    __syncwarp();
    if (lane == 0) cutlass::arch::ClusterBarrier::arrive(&shared.q_empty[q_buffer]);
  }
}

// Warp 0 of the producer warpgroup: loads Q, K and V with the TMA.
template <class Traits>
__device__ __forceinline__ void Cta<Traits>::load_warp(Pipeline& pipeline_k, Pipeline& pipeline_v) const {
  Tensor sQ = smem_q();
  Tensor sK = smem_k();
  Tensor sVt = smem_vt();
  Tensor mQ = params.tma_q.get_tma_tensor(make_shape(params.len_q, int(kHeadDim), params.heads, params.batch));
  Tensor mK = params.tma_k.get_tma_tensor(make_shape(params.len_k, int(kHeadDim), params.kv_heads, params.batch));
  Tensor mVt = params.tma_v.get_tma_tensor(make_shape(int(kHeadDim), params.len_k, params.kv_heads, params.batch));
  auto tma_q = params.tma_q.get_slice(_0{});
  auto tma_k = params.tma_k.get_slice(_0{});
  auto tma_v = params.tma_v.get_slice(_0{});
  Tensor tQsQ = tma_q.partition_D(sQ);
  Tensor tKsK = tma_k.partition_D(sK);
  Tensor tVsV = tma_v.partition_D(sVt);

  PipelineState write = cutlass::make_producer_start_state<Pipeline>();
  for (int iteration = 0;; ++iteration) {
    const int slot = iteration % kLists;
    cutlass::arch::ClusterBarrier::wait(&shared.list_full[slot], (iteration / kLists) & 1);
    const int32_t index = shared.work_index[slot];
    if (index < 0) break;
    const WorkTile w = decode_work_tile(index, q_tiles, params.heads);
    const int32_t kv_head = w.h / params.group;
    const int16_t* list = shared.visit_list[slot];
    const int32_t count = shared.visit_count[slot];

    Tensor gQ = local_tile(mQ(_, _, w.h, w.b), Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(w.m_block, _0{}));
    Tensor gK = local_tile(mK(_, _, kv_head, w.b), Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, _0{}));
    Tensor gVt = local_tile(mVt(_, _, kv_head, w.b), Shape<Int<kHeadDim>, Int<kBlockN>>{}, make_coord(_0{}, _));
    Tensor tQgQ = tma_q.partition_S(gQ);
    Tensor tKgK = tma_k.partition_S(gK);
    Tensor tVgV = tma_v.partition_S(gVt);

    // Q into its buffer once work tile iteration - 2 has been stored out of it.
    const int q_buffer = iteration & 1;
    if (iteration >= 2) cutlass::arch::ClusterBarrier::wait(&shared.q_empty[q_buffer], ((iteration >> 1) - 1) & 1);
    if (lane == 0) {
      cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&shared.q_full[q_buffer], Traits::kBytesQ);
      copy(params.tma_q.with(shared.q_full[q_buffer], 0), tQgQ, tQsQ(_, _, _, q_buffer));
    }
    for (int32_t i = 0; i < count; ++i) {
      const int32_t tile = list[i];
      pipeline_k.producer_acquire(write);
      if (lane == 0)
        copy(params.tma_k.with(*pipeline_k.producer_get_barrier(write), 0), tKgK(_, _, _, tile),
             tKsK(_, _, _, write.index()));
      pipeline_v.producer_acquire(write);
      if (lane == 0)
        copy(params.tma_v.with(*pipeline_v.producer_get_barrier(write), 0), tVgV(_, _, _, tile),
             tVsV(_, _, _, write.index()));
      ++write;
    }
    cutlass::arch::ClusterBarrier::arrive(&shared.list_empty[slot]);  // done reading the list
  }
  pipeline_k.producer_tail(write);
  pipeline_v.producer_tail(write);
}

}  // namespace liteattn::sm90
