// The portable LiteAttention forward kernel (sm_80 and newer: Ampere, Ada, Blackwell; a fallback
// on Hopper). Same contract as the Hopper kernel (method.md), same tile shapes, so a skip state
// made by one is valid for the other.
//
// Design (FlashAttention-2 family, written for this project):
// - One CTA per work tile (b, h, query tile) of 128 rows; 8 warps, 16 query rows each. The
//   hardware's block scheduler balances the uneven work of skipping calls.
// - Q is loaded once into registers (ldmatrix). K and V tiles go through one shared-memory
//   buffer each, filled with cp.async: the next K tile loads while the softmax and PV of the
//   current one run, the next V tile while the next QK^T runs. Q borrows the K buffer before the
//   first K tile, so shared memory is 2 x Bn x D x 2 bytes (72 KB at D = 128: it fits the 99 KB
//   of Ada and consumer Blackwell).
// - The visit sequence comes from the skip policy (core/skip_policy.hpp), which every thread
//   walks over the read mask in global memory: skipped tiles are never loaded or computed.
// - Each row's skip vote costs one compare (the row max is needed for the softmax anyway); the
//   CTA's votes meet in the barrier it passes before PV (__syncthreads_or), and thread 0 sets
//   the tile's bit in the write mask.
// - Shared-memory rows are stored with their 16-byte chunks XOR-swizzled by the row index, so
//   the cp.async writes and the ldmatrix reads are free of bank conflicts.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/plan.hpp"
#include "core/skip_policy.hpp"
#include "cuda/device_math.cuh"
#include "cuda/skip_state_pointers.hpp"
#include "sm80/warp_primitives.cuh"
#include "sm90/tile_config.hpp"

namespace liteattn::sm80 {

using cuda::fast_exp2;
using cuda::max_nan;
using cuda::neg_inf;

template <class Element_, int kHeadDim_>
struct KernelConfig {
  using Element = Element_;  // __nv_bfloat16 or __half
  static constexpr int kHeadDim = kHeadDim_;
  // The Hopper kernel's tile shape (part of the mask's identity, method.md section 1).
  static constexpr TileShape kTile = sm90::tile_shape_for_head_dim(kHeadDim);
  static constexpr int kBlockM = int(kTile.m);
  static constexpr int kBlockN = int(kTile.n);
  static constexpr int kWarps = kBlockM / 16;  // one m16 MMA row block per warp
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kRowsK = kBlockN > kBlockM ? kBlockN : kBlockM;  // the K buffer holds Q first
  static constexpr int kSharedBytes = (kRowsK + kBlockN) * kHeadDim * int(sizeof(Element));
  static_assert(kBlockM % 16 == 0 && kBlockN % 16 == 0 && kHeadDim % 16 == 0, "MMA tile multiples");
};

// Per (b, l, h) element strides of one tensor (unit stride in d).
struct Strides {
  std::int64_t b = 0, l = 0, h = 0;
};

struct Params {
  CallPlan plan;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  Strides q_strides, k_strides, v_strides, out_strides;
  float* lse = nullptr;  // optional, (B, H, Lq) contiguous
  std::int32_t len_q = 0, len_k = 0, heads = 0, group = 1;  // group = H / Hkv
  cuda::SkipStatePointers state;  // skipping calls only
};

// Offset (elements) of 16-byte chunk `chunk` of row `row` in a swizzled [rows][kHeadDim] tile.
template <int kHeadDim>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) * 8);
}

// Starts the copy of rows [first_row, first_row + kRows) of one head into a swizzled tile;
// rows at or past `len` are zero-filled. Each round copies kThreads chunks: kThreads / kChunks
// whole rows. The source advances by one pointer increment per round (precomputing every
// round's 64-bit address cost 36 registers at D = 128, and spills).
template <class Config, int kRows>
__device__ __forceinline__ void load_rows_async(typename Config::Element* tile,
                                                const typename Config::Element* head, std::int64_t row_stride,
                                                std::int32_t first_row, std::int32_t len) {
  constexpr int kRowsPerRound = Config::kThreads / Config::kChunks;
  static_assert(Config::kThreads % Config::kChunks == 0 && kRows % kRowsPerRound == 0 && kRowsPerRound % 8 == 0,
                "whole rows per round, a multiple of the swizzle period");
  const int row = int(threadIdx.x) / Config::kChunks, chunk = int(threadIdx.x) % Config::kChunks;
  const auto* source = head + std::int64_t(first_row + row) * row_stride + chunk * 8;
  const std::int64_t round_stride = kRowsPerRound * row_stride;
  std::uint32_t target = shared_address(tile + swizzled<Config::kHeadDim>(row, chunk));
#pragma unroll
  for (int round = 0; round < kRows / kRowsPerRound; ++round) {
    const bool valid = first_row + row + round * kRowsPerRound < len;
    copy_16_bytes_async(target, valid ? source : head, valid);
    source += round_stride;
    // kRowsPerRound is a multiple of 8, so the swizzle (row & 7) is the same every round.
    target += kRowsPerRound * Config::kHeadDim * int(sizeof(typename Config::Element));
  }
}

template <class Element>
__device__ __forceinline__ std::uint32_t pack2(float a, float b) {
  if constexpr (std::is_same_v<Element, __nv_bfloat16>) return cuda::pack_bf16x2(a, b);
  else return cuda::pack_f16x2(a, b);
}

template <class Config>
__global__ void __launch_bounds__(Config::kThreads, 1)
    attention_fwd_kernel(const __grid_constant__ Params params) {
  using Element = typename Config::Element;
  constexpr int kHeadDim = Config::kHeadDim, kBlockM = Config::kBlockM, kBlockN = Config::kBlockN;
  constexpr int kKeyBlocks = kBlockN / 8;   // n8 blocks of S
  constexpr int kDimBlocks = kHeadDim / 8;  // n8 blocks of O

  extern __shared__ __align__(128) unsigned char shared_raw[];
  Element* tile_k = reinterpret_cast<Element*>(shared_raw);  // Q first, then K
  Element* tile_v = tile_k + Config::kRowsK * kHeadDim;

  const CallPlan& plan = params.plan;
  const std::int32_t q_tiles = std::int32_t(plan.q_tiles), k_tiles = std::int32_t(plan.k_tiles);
  // Query tiles of one (b, h) are adjacent, so CTAs that run together share K and V in L2.
  const std::int32_t m_block = std::int32_t(blockIdx.x) % q_tiles;
  const std::int32_t bh = std::int32_t(blockIdx.x) / q_tiles;
  const std::int32_t b = bh / params.heads, h = bh % params.heads, kv_head = h / params.group;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool skipping = plan.skipping;
  const bool previous_criterion = plan.criterion == Criterion::previous;

  // This query tile's skip-state row: the read mask, the write mask, the call counter.
  const std::int64_t state_row = std::int64_t(bh) * q_tiles + m_block;
  std::uint32_t visits = 0;
  const std::uint32_t* read_row = nullptr;
  std::uint32_t* write_row = nullptr;
  if (skipping) {
    const std::int64_t state_rows = plan.batch * plan.heads * plan.q_tiles;
    visits = params.state.row_visits[state_row];
    read_row = params.state.mask + ((visits & 1u) * state_rows + state_row) * plan.words;
    write_row = params.state.mask + ((1u - (visits & 1u)) * state_rows + state_row) * plan.words;
    // Tiles this call does not visit are written 0; thread 0 sets the kept ones after barriers.
    for (std::int64_t word = threadIdx.x; word < plan.words; word += Config::kThreads) write_row[word] = 0u;
  }
  const QueryTilePolicy policy(plan, m_block, read_row, visits);

  // The thread's two rows (the MMA accumulator layout): g and g + 8 of its warp's 16.
  std::int32_t global_row[2];
  bool row_valid[2];
  float stored_max[2], row_max[2], row_sum[2];
  bool running_reference[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    global_row[r] = m_block * kBlockM + warp * 16 + lane / 4 + 8 * r;
    row_valid[r] = global_row[r] < params.len_q;
    stored_max[r] = __int_as_float(0x7fc00000);  // NaN: none stored
    // Read before the first barrier below: this thread's quad writes these rows at the end.
    if (skipping && previous_criterion && row_valid[r])
      stored_max[r] = params.state.row_max[std::int64_t(bh) * params.len_q + global_row[r]];
    running_reference[r] = uses_running_reference(plan.criterion, stored_max[r]);
    row_max[r] = neg_inf();
    row_sum[r] = 0.f;
  }

  const auto* q_head = static_cast<const Element*>(params.q) + b * params.q_strides.b + h * params.q_strides.h;
  const auto* k_head = static_cast<const Element*>(params.k) + b * params.k_strides.b + kv_head * params.k_strides.h;
  const auto* v_head = static_cast<const Element*>(params.v) + b * params.v_strides.b + kv_head * params.v_strides.h;
  auto load_k = [&](std::int32_t tile) {
    load_rows_async<Config, kBlockN>(tile_k, k_head, params.k_strides.l, tile * kBlockN, params.len_k);
  };
  auto load_v = [&](std::int32_t tile) {
    load_rows_async<Config, kBlockN>(tile_v, v_head, params.v_strides.l, tile * kBlockN, params.len_k);
  };

  // Q into registers: the A fragments of the warp's 16 rows, one per 16-wide k block.
  std::uint32_t q_fragment[kHeadDim / 16][4];
  load_rows_async<Config, kBlockM>(tile_k, q_head, params.q_strides.l, m_block * kBlockM, params.len_q);
  commit_async_copies();
  wait_async_copies<0>();
  __syncthreads();
#pragma unroll
  for (int kb = 0; kb < kHeadDim / 16; ++kb) {
    const int row = warp * 16 + lane % 16;
    load_matrix_x4(q_fragment[kb], shared_address(tile_k + swizzled<kHeadDim>(row, 2 * kb + lane / 16)));
  }
  __syncthreads();  // every warp holds its Q before K overwrites the buffer

  // ldmatrix addresses as a per-lane register plus a compile-time offset, so the loops below do
  // not keep one register per (k block, n block) address (that spilled at D = 128). A matrix row
  // of these loads is lane % 8 modulo 8, so its swizzle is chunk ^ (lane % 8), and for a 16-byte
  // chunk 8a + 2j + half (j < 4, half < 2) the swizzled chunk is 8a + (2j ^ (half ^ lane % 8)):
  // four per-lane bases (j) cover every chunk, the rest (8a, the row) is an immediate.
  constexpr int kRowBytes = kHeadDim * int(sizeof(Element));
  const int lane_row = lane % 8;
  std::uint32_t k_base[4], v_base[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    // K, for S = Q K^T: matrices (keys 0-7, chunk 2kb), (0-7, 2kb+1), (8-15, 2kb), (8-15, 2kb+1).
    const int k_row = (lane / 16) * 8 + lane_row, k_half = (lane / 8) % 2;
    k_base[j] = shared_address(tile_k) + k_row * kRowBytes + ((2 * j) ^ (k_half ^ lane_row)) * 16;
    // V, transposed for O += P V: (keys 0-7, chunk nd), (8-15, nd), (0-7, nd+1), (8-15, nd+1).
    const int v_row = ((lane / 8) % 2) * 8 + lane_row, v_half = lane / 16;
    v_base[j] = shared_address(tile_v) + v_row * kRowBytes + ((2 * j) ^ (v_half ^ lane_row)) * 16;
  }
  // The address of 16-byte chunk pair (2 * pair, 2 * pair + 1) at row offset `row` (a multiple of 8).
  auto chunk_address = [&](const std::uint32_t(&base)[4], int row, int pair) {
    return base[pair % 4] + std::uint32_t((pair / 4) * 128 + row * kRowBytes);
  };

  float o[kDimBlocks][4];
#pragma unroll
  for (int i = 0; i < kDimBlocks; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  const bool partial_last_tile = params.len_k % kBlockN != 0;
  const float scale_log2 = plan.scale_log2;
  const int col_in_quad = (lane % 4) * 2;

  std::int32_t visited = 0;
  std::int32_t position = policy.next(0);
  if (position < k_tiles) {
    load_k(policy.tile_at(position));
    commit_async_copies();
    load_v(policy.tile_at(position));
    commit_async_copies();
  }
  // Copy groups in flight at the top of each step: K(tile), then V(tile).
  while (position < k_tiles) {
    const std::int32_t tile = policy.tile_at(position);
    const std::int32_t next_position = policy.next(position + 1);
    const bool has_next = next_position < k_tiles;

    wait_async_copies<1>();  // K(tile) has landed
    __syncthreads();
    float s[kKeyBlocks][4];
#pragma unroll
    for (int i = 0; i < kKeyBlocks; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int kb = 0; kb < kHeadDim / 16; ++kb) {
#pragma unroll
      for (int nb = 0; nb < kKeyBlocks; nb += 2) {
        std::uint32_t kf[4];
        load_matrix_x4(kf, chunk_address(k_base, nb * 8, kb));
        mma_16x8x16<Element>(s[nb], q_fragment[kb], kf[0], kf[1]);
        mma_16x8x16<Element>(s[nb + 1], q_fragment[kb], kf[2], kf[3]);
      }
    }
    __syncthreads();  // every warp is done with K(tile)
    if (has_next) load_k(policy.tile_at(next_position));
    commit_async_copies();  // possibly empty: keeps the group count uniform

    // Online softmax over the tile, with the skip votes.
    if (partial_last_tile && tile == k_tiles - 1) {
      const int valid_columns = params.len_k - tile * kBlockN;
#pragma unroll
      for (int nb = 0; nb < kKeyBlocks; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (nb * 8 + col_in_quad + (i % 2) >= valid_columns) s[nb][i] = neg_inf();
    }
    bool vote = false;
    float scale_o[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float tile_max = neg_inf();
#pragma unroll
      for (int nb = 0; nb < kKeyBlocks; ++nb) tile_max = max_nan(tile_max, max_nan(s[nb][2 * r], s[nb][2 * r + 1]));
      tile_max = max_nan(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = max_nan(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      if (skipping && row_valid[r]) {
        const float reference = running_reference[r] ? row_max[r] : stored_max[r];
        vote |= row_votes_keep(tile_max, reference, scale_log2, plan.threshold);
      }
      const float new_max = max_nan(row_max[r], tile_max);
      // A row that has seen only -inf scores has nothing to accumulate: weights exp2(-inf) = 0
      // and O scale 1, not exp2(-inf + inf) = NaN.
      const bool nothing_yet = new_max == neg_inf();
      scale_o[r] = nothing_yet ? 1.f : fast_exp2((row_max[r] - new_max) * scale_log2);
      row_max[r] = new_max;
      const float offset = nothing_yet ? 0.f : new_max * scale_log2;
      float sum = 0.f;
#pragma unroll
      for (int nb = 0; nb < kKeyBlocks; ++nb) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          float& x = s[nb][2 * r + c];
          x = fast_exp2(fmaf(x, scale_log2, -offset));
          sum += x;
        }
      }
      row_sum[r] = row_sum[r] * scale_o[r] + sum;
    }
#pragma unroll
    for (int i = 0; i < kDimBlocks; ++i) {
      o[i][0] *= scale_o[0];
      o[i][1] *= scale_o[0];
      o[i][2] *= scale_o[1];
      o[i][3] *= scale_o[1];
    }

    wait_async_copies<1>();  // V(tile) has landed
    // The barrier that publishes V(tile) also collects the CTA's votes: the tile is kept when
    // any valid row of the query tile voted keep.
    const bool any_keep = __syncthreads_or(vote) != 0;
    if (skipping && threadIdx.x == 0 && policy.writes_keep(tile, any_keep))
      atomicOr(&write_row[tile >> 5], 1u << (tile & 31));

    // O += P V: two adjacent n8 blocks of S are one 16-key k block of the A operand.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const std::uint32_t p[4] = {pack2<Element>(s[2 * kk][0], s[2 * kk][1]), pack2<Element>(s[2 * kk][2], s[2 * kk][3]),
                                  pack2<Element>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack2<Element>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int nd = 0; nd < kDimBlocks; nd += 2) {
        std::uint32_t vf[4];
        load_matrix_x4_transposed(vf, chunk_address(v_base, kk * 16, nd / 2));
        mma_16x8x16<Element>(o[nd], p, vf[0], vf[1]);
        mma_16x8x16<Element>(o[nd + 1], p, vf[2], vf[3]);
      }
    }
    __syncthreads();  // every warp is done with V(tile)
    if (has_next) load_v(policy.tile_at(next_position));
    commit_async_copies();

    ++visited;
    position = next_position;
  }

  // Epilogue: normalize, write out (two elements per store) and lse, then the state row.
  auto* out = static_cast<Element*>(params.out) + b * params.out_strides.b + h * params.out_strides.h;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    // A row whose tiles were all skipped: out 0, lse -inf (never NaN).
    const float inv_sum = sum == 0.f ? 0.f : 1.f / sum;
    if (!row_valid[r]) continue;
    Element* out_row = out + std::int64_t(global_row[r]) * params.out_strides.l + col_in_quad;
#pragma unroll
    for (int nd = 0; nd < kDimBlocks; ++nd)
      *reinterpret_cast<std::uint32_t*>(out_row + nd * 8) =
          pack2<Element>(o[nd][2 * r] * inv_sum, o[nd][2 * r + 1] * inv_sum);
    if (lane % 4 == 0) {
      if (params.lse != nullptr)
        params.lse[std::int64_t(bh) * params.len_q + global_row[r]] =
            sum == 0.f ? neg_inf() : row_max[r] * plan.scale + logf(sum);
      if (skipping && previous_criterion) params.state.row_max[std::int64_t(bh) * params.len_q + global_row[r]] = row_max[r];
    }
  }
  // Every thread read the call counter before the barrier after the Q load.
  if (skipping && threadIdx.x == 0) {
    params.state.row_visits[state_row] = visits + 1;
    atomicAdd(&params.state.kept[bh], std::uint32_t(visited));
    if (params.state.cumulative != nullptr) atomicAdd(&params.state.cumulative[bh], static_cast<unsigned long long>(visited));
  }
}

}  // namespace liteattn::sm80
