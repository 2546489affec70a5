// The consumer warpgroups: per work tile, the QK^T and PV wgmmas, the online softmax and the
// skip votes, then O normalized and staged for the store warp. See kernel.cuh for the design.
#pragma once

#include "sm90/device_helpers.cuh"
#include "sm90/kernel_traits.cuh"

namespace liteattn::sm90 {

// Consumer warpgroups 1 and 2: 64 query rows each.
template <class Traits>
__device__ __forceinline__ void Cta<Traits>::consumer_warpgroups(Pipeline& pipeline_k,
                                                                Pipeline& pipeline_v) const {
  Tensor sQ = smem_q();
  Tensor sK = smem_k();
  Tensor sVt = smem_vt();
  cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegisters>();
  const int thread = threadIdx.x - cutlass::NumThreadsPerWarpGroup;  // 0 .. kMmaThreads-1
  typename Traits::TiledMmaQK tiled_mma_qk;
  typename Traits::TiledMmaPV tiled_mma_pv;
  auto thread_mma_qk = tiled_mma_qk.get_thread_slice(thread);
  auto thread_mma_pv = tiled_mma_pv.get_thread_slice(thread);
  Tensor tSrQ = thread_mma_qk.partition_fragment_A(sQ);
  Tensor tSrK = thread_mma_qk.partition_fragment_B(sK);
  Tensor tOrV = thread_mma_pv.partition_fragment_B(sVt);

  // Each thread owns two rows of the tile (the wgmma accumulator layout): r and r + 8.
  const int local_row0 = (thread / 128) * 64 + ((thread % 128) / kWarp) * 16 + lane / 4;
  const int col_in_quad = (lane % 4) * 2;
  const float scale_log2 = plan.scale_log2;
  const float threshold = plan.threshold;
  const bool previous_criterion = plan.criterion == Criterion::previous;
  const bool partial_last_tile = (params.len_k % kBlockN) != 0;

  // Warpgroup turns: a consumer warpgroup issues its GEMMs (a work tile's first QK^T, each
  // main-loop step's QK^T and PV, the last PV) only on its turn and then hands the turn to the
  // other one, so the tensor cores alternate between them and one warpgroup's softmax overlaps
  // the other's GEMMs. Both walk the same tile sequence, so the turns stay paired across work
  // tiles; warpgroup 0 takes the first turn.
  const int consumer_wg = thread / cutlass::NumThreadsPerWarpGroup;
  const bool schedule = params.schedule_warpgroups;
  auto wait_turn = [&] {
    if (schedule) cutlass::arch::NamedBarrier::sync(kMmaThreads, uint32_t(Barrier::wg_turn) + consumer_wg);
  };
  auto pass_turn = [&] {
    if (schedule) cutlass::arch::NamedBarrier::arrive(kMmaThreads, uint32_t(Barrier::wg_turn) + (1 - consumer_wg));
  };
  if (schedule && consumer_wg == 0) cutlass::arch::NamedBarrier::arrive(kMmaThreads, uint32_t(Barrier::wg_turn));

  PipelineState read;  // starts at stage 0, phase 0 (consumer start state)
  for (int iteration = 0;; ++iteration) {
    // This work tile's slot (visit list, votes), published by the skip-state warp.
    const int list_slot = iteration % Traits::SharedStorage::kLists;
    cutlass::arch::ClusterBarrier::wait(&shared.list_full[list_slot], (iteration / Traits::SharedStorage::kLists) & 1);
    const int32_t index = shared.work_index[list_slot];
    if (index < 0) break;
    const WorkTile w = decode_work_tile(index, q_tiles, params.heads);
    uint32_t* votes = shared.votes[list_slot];

    int global_row[2];
    bool row_valid[2];
    float stored_max[2];
    bool running_ref[2];
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      global_row[r] = w.m_block * kBlockM + local_row0 + 8 * r;
      row_valid[r] = global_row[r] < params.len_q;
      stored_max[r] = __int_as_float(0x7fc00000);  // NaN: none stored
      if (skipping && previous_criterion && row_valid[r])
        stored_max[r] = params.state.row_max[int64_t(w.bh) * params.len_q + global_row[r]];
      running_ref[r] = uses_running_reference(plan.criterion, stored_max[r]);
    }
    float row_max[2] = {neg_inf(), neg_inf()};  // exact running max: votes, the stored state
    float exp_ref[2] = {neg_inf(), neg_inf()};  // the max the weights are taken against (lazy)
    float row_sum[2] = {0.f, 0.f};

    Tensor tOrO = partition_fragment_C(tiled_mma_pv, select<0, 1>(typename Traits::TileShapePV{}));
    clear(tOrO);
    // P as the A operand of the PV wgmma: two adjacent 8-column blocks of the S accumulator are
    // exactly one 16-wide k block of the register A fragment, so the layout is a regrouping.
    auto p_layout = make_layout(make_shape(make_shape(_2{}, _2{}, _2{}), _1{}, Int<kBlockN / 16>{}),
                                make_stride(make_stride(_1{}, _2{}, _4{}), _0{}, _8{}));
    Tensor tOrP = make_tensor<Element>(p_layout);

    uint32_t position_votes = 0;  // warp-uniform
    auto flush_votes = [&](int32_t last_position) {
      if (lane == 0 && position_votes != 0) atomicOr(&votes[last_position >> 5], position_votes);
      position_votes = 0;
    };
    // Masks padding columns of the last key tile, runs the online softmax on the tile's scores,
    // records the skip votes, and leaves P (unnormalised) in S. Returns nothing; scale_o gets the
    // factor by which O must be rescaled.
    auto softmax_tile = [&](auto& tSrS, int32_t tile, int32_t position, float (&scale_o)[2]) {
      if (partial_last_tile && tile == k_tiles - 1) {
        const int valid_cols = params.len_k - tile * kBlockN;
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < size(tSrS); ++i) {
          const int col = (i / 4) * 8 + col_in_quad + (i % 2);
          if (col >= valid_cols) tSrS(i) = neg_inf();
        }
      }
      bool vote = false;
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        // Two independent max chains and four partial sums instead of one serial chain each:
        // a shorter softmax critical path (measured +1.4 % dense at (32760, 40) on H100, NOTES run 21).
        // Each chain starts from its first value, not from -inf or 0: ptxas cannot drop a max
        // with -inf or an add of 0 (-0 + 0 is +0), so those would cost 12 instructions per tile.
        float part_max[2];
        CUTLASS_PRAGMA_UNROLL
        for (int nb = 0; nb < size(tSrS) / 4; ++nb) {
          const float pair_max = max_nan(tSrS(nb * 4 + 2 * r), tSrS(nb * 4 + 2 * r + 1));
          part_max[nb % 2] = nb < 2 ? pair_max : max_nan(part_max[nb % 2], pair_max);
        }
        float tile_max = max_nan(part_max[0], part_max[1]);
        tile_max = max_nan(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = max_nan(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        if (skipping && row_valid[r]) {  // dense calls skip the vote entirely
          const float reference = running_ref[r] ? row_max[r] : stored_max[r];
          vote |= row_votes_keep(tile_max, reference, scale_log2, threshold);
        }
        const float new_max = max_nan(row_max[r], tile_max);
        row_max[r] = new_max;
        // Lazy: O is rescaled only when the max has grown far past the weights' reference.
        scale_o[r] = advance_reference(new_max, exp_ref[r], scale_log2);
        const float offset = weight_offset(exp_ref[r], scale_log2);
        float part_sum[4];
        CUTLASS_PRAGMA_UNROLL
        for (int nb = 0; nb < size(tSrS) / 4; ++nb) {
          CUTLASS_PRAGMA_UNROLL
          for (int c = 0; c < 2; ++c) {
            float& s = tSrS(nb * 4 + 2 * r + c);
            s = fast_exp2(fmaf(s, scale_log2, -offset));
            float& sum = part_sum[(nb % 2) * 2 + c];
            sum = nb < 2 ? s : sum + s;
          }
        }
        const float sum = (part_sum[0] + part_sum[1]) + (part_sum[2] + part_sum[3]);
        row_sum[r] = row_sum[r] * scale_o[r] + sum;
      }
      if (skipping) {
        // The tile is kept when any valid row votes keep. Each warp collects its votes by visit
        // position in a register and ORs them into shared memory once per 32 positions (and
        // once at the end of the work tile); the skip-state warp maps positions to tiles.
        if (__any_sync(0xffffffffu, vote)) position_votes |= 1u << (position & 31);
        if ((position & 31) == 31) flush_votes(position);
      }
    };
    auto convert_p = [&](auto const& tSrS) {
      uint32_t* dst = reinterpret_cast<uint32_t*>(raw_pointer_cast(tOrP.data()));
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(tSrS) / 2; ++i) dst[i] = pack2<Element>(tSrS(2 * i), tSrS(2 * i + 1));
    };
    auto rescale_o = [&](float const (&scale_o)[2]) {
      // Past the first tiles a row's max rarely grows, so most tiles leave every factor of the
      // warp at 1: skipping the 64 multiplies then saves issue slots that the softmax needs
      // (measured +3 % dense at L = 32760 on an H200).
      if (__all_sync(0xffffffffu, scale_o[0] == 1.f && scale_o[1] == 1.f)) return;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(tOrO); ++i) tOrO(i) *= scale_o[(i / 2) % 2];
    };

    // O's pending rescale: the factor from the softmax of the tile whose P waits for its PV. It is
    // applied right after the next QK^T is issued, while the tensor cores run it, instead of
    // between the PV's completion and the next issue (with the unit skip in rescale_o this
    // placement measured 2 % faster on an H200; bench/NOTES.md, run 5).
    float scale_o[2];

    // Its Q buffer.
    const int32_t visited = shared.visit_count[list_slot];
    const int16_t* list = shared.visit_list[list_slot];
    const int q_buffer = iteration & 1;
    cutlass::arch::ClusterTransactionBarrier::wait(&shared.q_full[q_buffer], (iteration >> 1) & 1);
    Tensor tSrQ_tile = tSrQ(_, _, _, q_buffer);
    if (visited > 0) {
      {
        const int32_t tile = list[0];
        Tensor tSrS = partition_fragment_C(tiled_mma_qk, select<0, 1>(typename Traits::TileShapeQK{}));
        pipeline_k.consumer_wait(read);
        // The first QK^T and the last PV take turns too, so the two warpgroups keep alternating
        // across work tiles instead of issuing together at each work tile's start (+2-3 % sparse
        // at (8192, 40) on H100, NOTES run 27).
        wait_turn();
        wg_gemm<true, -1>(tiled_mma_qk, tSrQ_tile, tSrK(_, _, _, read.index()), tSrS);
        pass_turn();
        warpgroup_wait<0>();
        pipeline_k.consumer_release(read);
        softmax_tile(tSrS, tile, 0, scale_o);  // scale_o then multiplies O = 0: harmless
        convert_p(tSrS);
      }
      for (int32_t i = 1; i < visited; ++i) {
        const int32_t tile = list[i];
        PipelineState read_v = read;
        ++read;
        Tensor tSrS = partition_fragment_C(tiled_mma_qk, select<0, 1>(typename Traits::TileShapeQK{}));
        pipeline_k.consumer_wait(read);
        wait_turn();
        wg_gemm<true, -1>(tiled_mma_qk, tSrQ_tile, tSrK(_, _, _, read.index()), tSrS);
        rescale_o(scale_o);  // O is idle: the last PV completed at the previous wait<0>
        pipeline_v.consumer_wait(read_v);
        wg_gemm<false, -1>(tiled_mma_pv, tOrP, tOrV(_, _, _, read_v.index()), tOrO);
        pass_turn();
        warpgroup_wait<1>();
        pipeline_k.consumer_release(read);
        softmax_tile(tSrS, tile, i, scale_o);
        warpgroup_wait<0>();
        pipeline_v.consumer_release(read_v);
        convert_p(tSrS);
      }
      if (skipping) flush_votes(visited - 1);
      // The visit list and the votes are done with: the producer may write out and refill the
      // slot. (The Q buffer is not: the epilogue stages O in it.)
      cutlass::arch::ClusterBarrier::arrive(&shared.list_empty[list_slot]);
      rescale_o(scale_o);
      pipeline_v.consumer_wait(read);
      wait_turn();
      wg_gemm<false, -1>(tiled_mma_pv, tOrP, tOrV(_, _, _, read.index()), tOrO);
      pass_turn();
      warpgroup_wait<0>();
      pipeline_v.consumer_release(read);
      ++read;
    } else {
      cutlass::arch::ClusterBarrier::arrive(&shared.list_empty[list_slot]);
    }

    // ---------------------------------- epilogue ------------------------------------------
    // Both rows at once and without branches until the stores: the epilogue runs once per work
    // tile with nothing to overlap it, so its latency counts (bench/NOTES.md run 61).
    float sum[2], inv_sum[2];
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < 2; ++r) sum[r] = row_sum[r] + __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 2);
      inv_sum[r] = reciprocal_or_zero(sum[r]);  // a row whose tiles were all skipped: out 0
    }
    if ((params.lse != nullptr || (skipping && previous_criterion)) && (lane % 4) == 0) {
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        if (!row_valid[r]) continue;
        if (params.lse != nullptr) {  // lse -inf for a row whose tiles were all skipped (never NaN)
          const float lse = sum[r] == 0.f ? neg_inf() : exp_ref[r] * plan.scale + logf(sum[r]);
          params.lse[w.b * params.lse_stride_b + w.h * params.lse_stride_h + global_row[r] * params.lse_stride_l] = lse;
        }
        if (skipping && previous_criterion)
          params.state.row_max[int64_t(w.bh) * params.len_q + global_row[r]] = row_max[r];
      }
    }
    // Row r's pair of O values in key-column block nb, normalized and packed for out.
    auto normalized_pair = [&](int r, int nb) {
      return pack2<Element>(tOrO(nb * 4 + 2 * r) * inv_sum[r], tOrO(nb * 4 + 2 * r + 1) * inv_sum[r]);
    };
    if (params.store_out_with_tma) {
      // O goes into this warpgroup's rows of the Q buffer (its last QK^T has read them; the other
      // warpgroup's QK^T reads only its own rows) for the store warp's TMA store. The swizzled Q
      // layout keeps these writes free of bank conflicts and is the layout the TMA reads. (Storing
      // from registers costs 64 half-sector stores per thread, ~1 µs per work tile: NOTES run 13.)
      // One stmatrix per two 8-column blocks, both rows of each, in the tile order of
      // stmatrix_lane_row. Addresses in the shared window, 32-bit (through the smem tensor the
      // compiler formed 64-bit generic addresses: ~250 instructions for 32 stores).
      const uint32_t buffer = cuda::shared_address(&sQ(0, 0, q_buffer));
      const int tile_row = local_row0 - lane / 4 + stmatrix_lane_row(lane);
      const int tile_block = stmatrix_lane_block(lane);
      CUTLASS_PRAGMA_UNROLL
      for (int nb = 0; nb < size(tOrO) / 4; nb += 2)
        store_matrix_x4(buffer + staged_offset<kBlockM>(tile_row, (nb + tile_block) * 8), normalized_pair(0, nb),
                        normalized_pair(1, nb), normalized_pair(0, nb + 1), normalized_pair(1, nb + 1));
      // These writes (generic proxy) before the TMA's reads (async proxy) of them.
      cutlass::arch::fence_view_async_shared();
    } else {
      Element* out = static_cast<Element*>(params.out) + w.b * params.out_stride_b + w.h * params.out_stride_h;
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        if (!row_valid[r]) continue;
        Element* out_row = out + int64_t(global_row[r]) * params.out_stride_l + col_in_quad;
        CUTLASS_PRAGMA_UNROLL
        for (int nb = 0; nb < size(tOrO) / 4; ++nb) *reinterpret_cast<uint32_t*>(out_row + nb * 8) = normalized_pair(r, nb);
      }
    }
    cutlass::arch::ClusterBarrier::arrive(&shared.o_staged[q_buffer]);
  }
}

}  // namespace liteattn::sm90
