// The portable LiteAttention forward kernel (sm_80 and newer: Ampere, Ada, Blackwell; a fallback
// on Hopper). Same contract as the Hopper kernel (method.md), same tile shapes, so a skip state
// made by one is valid for the other.
//
// Design (FlashAttention-2 family, written for this project):
// - One CTA per work tile (b, h, query tile) of 128 rows; 4 warps of 32 query rows (two m16 MMA
//   row blocks), so each K and V fragment read from shared memory feeds two MMAs: 32 flop per
//   shared-memory byte, above the 16 of an Ampere SM's tensor-core-to-shared-memory ratio (with
//   16 rows per warp the kernel sat at that bound). The hardware's block scheduler balances the
//   uneven work of skipping calls.
// - Q is loaded once into registers (ldmatrix). K and V flow through a 3-stage cp.async ring of
//   parts (48 or 64 keys of K and of V): a part loads two parts ahead of the one being computed,
//   and one barrier per part both publishes a landed part and frees the stage the next load
//   takes. Q passes through the ring before the first part. Shared memory: 72 KB at D = 128,
//   48 KB at D = 64 (Ada and consumer Blackwell allow 99 KB).
// - Registers hold O (32 x D per warp) and Q, so scores are computed a chunk of keys at a time
//   (16 at D = 128, 32 at D = 64, where O and Q take half the registers): QK^T, the online
//   softmax, and PV of one chunk before the next. The skip test stays per mask tile: a row's
//   tile max is the max over the tile's chunks, compared with the reference taken at the tile's
//   start (the running max before the tile, or the `previous` stored max).
// - The visit sequence comes from the skip policy (core/skip_policy.hpp), which every thread
//   walks over the read mask (copied to shared memory when it has at most 64 words): skipped
//   tiles are never loaded or computed.
// - The CTA's votes for a tile meet in the first barrier after it (__syncthreads_or), and thread
//   0 sets the tile's bit in the write mask.
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
using cuda::reciprocal_or_zero;
using cuda::shared_address;

// Mask words of the read row kept in shared memory (longer rows are read from global memory).
constexpr int kCachedMaskWords = 64;

// The keys per pipeline part: the largest of 64, 48, 32, 16 that divides the tile width.
constexpr int part_keys_for(int block_n) {
  for (int keys : {64, 48, 32, 16})
    if (block_n % keys == 0) return keys;
  return 0;
}

template <class Element_, int kHeadDim_>
struct KernelConfig {
  using Element = Element_;  // __nv_bfloat16 or __half
  static constexpr int kHeadDim = kHeadDim_;
  // The Hopper kernel's tile shape (part of the mask's identity, method.md section 1).
  static constexpr TileShape kTile = sm90::tile_shape_for_head_dim(kHeadDim);
  static constexpr int kBlockM = int(kTile.m);
  static constexpr int kBlockN = int(kTile.n);
  static constexpr int kWarps = 4;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;  // 32: two m16 MMA row blocks
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kPartKeys = part_keys_for(kBlockN);
  static constexpr int kPartsPerTile = kBlockN / kPartKeys;
  static constexpr int kStages = 3;
  static constexpr int kStageElements = 2 * kPartKeys * kHeadDim;  // K then V
  static constexpr int kSharedBytes = kStages * kStageElements * int(sizeof(Element));
  static_assert(kRowsPerWarp == 32 && kPartKeys % 16 == 0 && kHeadDim % 16 == 0, "MMA tile multiples");
  static_assert(kBlockM * kHeadDim <= kStages * kStageElements, "Q passes through the ring");
  static_assert(kSharedBytes <= 99 * 1024, "Ada and consumer Blackwell allow 99 KB per CTA");
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
  constexpr int kPartKeys = Config::kPartKeys, kPartsPerTile = Config::kPartsPerTile, kStages = Config::kStages;
  constexpr int kDimBlocks = kHeadDim / 8;  // n8 blocks of O
  constexpr int kRowBytes = kHeadDim * int(sizeof(Element));
  constexpr int kStageBytes = Config::kStageElements * int(sizeof(Element));

  extern __shared__ __align__(128) unsigned char shared_raw[];
  Element* ring = reinterpret_cast<Element*>(shared_raw);  // kStages x (K part, V part); Q first

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
  // The read row goes to shared memory when it fits (2048 key tiles): every thread walks the
  // visit order over it before each part, and a global load there stalled the part's loads
  // (+5 % for detection at D = 64 on an H100 before). The barrier after the Q load publishes it.
  __shared__ std::uint32_t cached_read_row[kCachedMaskWords];
  if (skipping && plan.words <= kCachedMaskWords) {
    for (int word = threadIdx.x; word < plan.words; word += Config::kThreads) cached_read_row[word] = read_row[word];
    read_row = cached_read_row;
  }
  const QueryTilePolicy policy(plan, m_block, read_row, visits);

  // The thread's four rows (the MMA accumulator layout): g and g + 8 of each of its warp's two
  // 16-row blocks; row r = 2 * block + half.
  std::int32_t global_row[4];
  bool row_valid[4];
  float stored_max[4], row_max[4], row_sum[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    global_row[r] = m_block * kBlockM + warp * 32 + (r / 2) * 16 + lane / 4 + 8 * (r % 2);
    row_valid[r] = global_row[r] < params.len_q;
    stored_max[r] = __int_as_float(0x7fc00000);  // NaN: none stored
    // Read before the first barrier below: this thread's quad writes these rows at the end.
    if (skipping && previous_criterion && row_valid[r])
      stored_max[r] = params.state.row_max[std::int64_t(bh) * params.len_q + global_row[r]];
    row_max[r] = neg_inf();
    row_sum[r] = 0.f;
  }

  const auto* q_head = static_cast<const Element*>(params.q) + b * params.q_strides.b + h * params.q_strides.h;
  const auto* k_head = static_cast<const Element*>(params.k) + b * params.k_strides.b + kv_head * params.k_strides.h;
  const auto* v_head = static_cast<const Element*>(params.v) + b * params.v_strides.b + kv_head * params.v_strides.h;

  // Q into registers: the A fragments of the warp's two row blocks, one per 16-wide k block.
  std::uint32_t q_fragment[2][kHeadDim / 16][4];
  load_rows_async<Config, kBlockM>(ring, q_head, params.q_strides.l, m_block * kBlockM, params.len_q);
  commit_async_copies();
  wait_async_copies<0>();
  __syncthreads();
#pragma unroll
  for (int block = 0; block < 2; ++block)
#pragma unroll
    for (int kb = 0; kb < kHeadDim / 16; ++kb) {
      const int row = warp * 32 + block * 16 + lane % 16;
      load_matrix_x4(q_fragment[block][kb], shared_address(ring + swizzled<kHeadDim>(row, 2 * kb + lane / 16)));
    }
  __syncthreads();  // every warp holds its Q before the ring's first parts overwrite it

  // The part sequence: part p is part p % kPartsPerTile of the (p / kPartsPerTile)-th visited
  // tile. Two cursors walk it: one for the loads (kStages - 1 parts ahead), one for the compute.
  struct Cursor {
    std::int32_t position, part;  // position in the visit order (k_tiles: past the end)
  };
  auto advance = [&](Cursor& c) {
    if (++c.part == kPartsPerTile) c = {policy.next(c.position + 1), 0};
  };
  auto issue_load = [&](Cursor& c, int stage) {
    if (c.position < k_tiles) {
      const std::int32_t first_key = policy.tile_at(c.position) * kBlockN + c.part * kPartKeys;
      Element* k_part = ring + stage * Config::kStageElements;
      load_rows_async<Config, kPartKeys>(k_part, k_head, params.k_strides.l, first_key, params.len_k);
      load_rows_async<Config, kPartKeys>(k_part + kPartKeys * kHeadDim, v_head, params.v_strides.l, first_key,
                                         params.len_k);
      advance(c);
    }
    commit_async_copies();  // possibly empty: keeps the group count uniform
  };
  Cursor load_cursor{policy.next(0), 0};
  Cursor cursor = load_cursor;
#pragma unroll
  for (int stage = 0; stage < kStages - 1; ++stage) issue_load(load_cursor, stage);

  // ldmatrix addresses as a per-lane register plus compile-time offsets, so the loops below do
  // not keep one register per address. A matrix row of these loads is lane % 8 modulo 8, so its
  // swizzle is chunk ^ (lane % 8), and for a 16-byte chunk 8a + 2j + half (j < 4, half < 2) the
  // swizzled chunk is 8a + (2j ^ (half ^ lane % 8)): four per-lane bases (j) cover every chunk,
  // the rest (8a, the row, the stage) is added.
  const int lane_row = lane % 8;
  std::uint32_t k_base[4], v_base[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    // K, for S = Q K^T: matrices (keys 0-7, chunk 2kb), (0-7, 2kb+1), (8-15, 2kb), (8-15, 2kb+1).
    const int k_row = (lane / 16) * 8 + lane_row, k_half = (lane / 8) % 2;
    k_base[j] = shared_address(ring) + k_row * kRowBytes + ((2 * j) ^ (k_half ^ lane_row)) * 16;
    // V, transposed for O += P V: (keys 0-7, chunk nd), (8-15, nd), (0-7, nd+1), (8-15, nd+1).
    const int v_row = ((lane / 8) % 2) * 8 + lane_row, v_half = lane / 16;
    v_base[j] = shared_address(ring + kPartKeys * kHeadDim) + v_row * kRowBytes + ((2 * j) ^ (v_half ^ lane_row)) * 16;
  }
  // The address of 16-byte chunk pair (2 * pair, 2 * pair + 1) at row `row` (a multiple of 8).
  auto chunk_address = [&](const std::uint32_t(&base)[4], std::uint32_t stage_offset, int row, int pair) {
    return base[pair % 4] + stage_offset + std::uint32_t((pair / 4) * 128 + row * kRowBytes);
  };

  float o[2][kDimBlocks][4];
#pragma unroll
  for (int block = 0; block < 2; ++block)
#pragma unroll
    for (int i = 0; i < kDimBlocks; ++i) o[block][i][0] = o[block][i][1] = o[block][i][2] = o[block][i][3] = 0.f;
  const float scale_log2 = plan.scale_log2;
  const int col_in_quad = (lane % 4) * 2;

  // The skip test of the tile being computed: per row, its max so far and the reference.
  float tile_max[4], reference[4];
  bool vote = false;            // any of this thread's rows voted keep for the last finished tile
  std::int32_t voted_tile = -1;  // that tile, whose bit the next barrier's OR decides
  std::int32_t visited = 0;

  for (int p = 0; cursor.position < k_tiles; ++p) {
    const int stage = p % kStages;
    const std::int32_t tile = policy.tile_at(cursor.position);
    wait_async_copies<kStages - 2>();  // this part has landed
    // The barrier publishes the part to every warp, frees the stage the load below takes (every
    // warp is done with the part before), and collects the votes of the tile finished before it.
    const bool any_keep = __syncthreads_or(vote) != 0;
    if (voted_tile >= 0) {
      if (skipping && threadIdx.x == 0 && policy.writes_keep(voted_tile, any_keep))
        atomicOr(&write_row[voted_tile >> 5], 1u << (voted_tile & 31));
      voted_tile = -1;
      vote = false;
    }
    issue_load(load_cursor, (p + kStages - 1) % kStages);

    if (cursor.part == 0) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        tile_max[r] = neg_inf();
        reference[r] = uses_running_reference(plan.criterion, stored_max[r]) ? row_max[r] : stored_max[r];
      }
    }
    const std::uint32_t stage_offset = std::uint32_t(stage * kStageBytes);
    const std::int32_t part_first_key = tile * kBlockN + cursor.part * kPartKeys;
    // Keys per chunk: S takes kChunkKeys registers per thread. 32 at D = 64 ran 17-19 % faster
    // than 16 on an H100 (bench/NOTES.md, run 43); at D = 128 O and Q leave room for 16.
    constexpr int kChunkKeys = kHeadDim <= 64 ? 32 : 16;
    static_assert(kPartKeys % kChunkKeys == 0, "whole chunks per part");
    constexpr int kChunkBlocks = kChunkKeys / 8;
#pragma unroll
    for (int chunk = 0; chunk < kPartKeys / kChunkKeys; ++chunk) {
      const std::int32_t chunk_first_key = part_first_key + chunk * kChunkKeys;
      if (chunk_first_key >= params.len_k) break;  // padding keys of the last tile: nothing to add
      float s[2][kChunkBlocks][4] = {};
#pragma unroll
      for (int kb = 0; kb < kHeadDim / 16; ++kb) {
#pragma unroll
        for (int pair = 0; pair < kChunkBlocks / 2; ++pair) {
          std::uint32_t kf[4];
          load_matrix_x4(kf, chunk_address(k_base, stage_offset, chunk * kChunkKeys + pair * 16, kb));
#pragma unroll
          for (int block = 0; block < 2; ++block) {
            mma_16x8x16<Element>(s[block][2 * pair], q_fragment[block][kb], kf[0], kf[1]);
            mma_16x8x16<Element>(s[block][2 * pair + 1], q_fragment[block][kb], kf[2], kf[3]);
          }
        }
      }
      if (chunk_first_key + kChunkKeys > params.len_k) {
        const int valid_keys = params.len_k - chunk_first_key;
#pragma unroll
        for (int block = 0; block < 2; ++block)
#pragma unroll
          for (int nb = 0; nb < kChunkBlocks; ++nb)
#pragma unroll
            for (int i = 0; i < 4; ++i)
              if (nb * 8 + col_in_quad + (i % 2) >= valid_keys) s[block][nb][i] = neg_inf();
      }
      float scale_o[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        float (&rs)[kChunkBlocks][4] = s[r / 2];
        const int half = r % 2;
        float chunk_max = neg_inf();
#pragma unroll
        for (int nb = 0; nb < kChunkBlocks; ++nb) chunk_max = max_nan(chunk_max, max_nan(rs[nb][2 * half], rs[nb][2 * half + 1]));
        chunk_max = max_nan(chunk_max, __shfl_xor_sync(0xffffffffu, chunk_max, 1));
        chunk_max = max_nan(chunk_max, __shfl_xor_sync(0xffffffffu, chunk_max, 2));
        tile_max[r] = max_nan(tile_max[r], chunk_max);
        const float new_max = max_nan(row_max[r], chunk_max);
        const bool nothing_yet = new_max == neg_inf();
        scale_o[r] = nothing_yet ? 1.f : fast_exp2((row_max[r] - new_max) * scale_log2);
        row_max[r] = new_max;
        const float offset = nothing_yet ? 0.f : new_max * scale_log2;
        float sum = 0.f;
#pragma unroll
        for (int nb = 0; nb < kChunkBlocks; ++nb)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            float& x = rs[nb][2 * half + c];
            x = fast_exp2(fmaf(x, scale_log2, -offset));
            sum += x;
          }
        row_sum[r] = row_sum[r] * scale_o[r] + sum;
      }
      if (!__all_sync(0xffffffffu, scale_o[0] == 1.f && scale_o[1] == 1.f && scale_o[2] == 1.f && scale_o[3] == 1.f)) {
#pragma unroll
        for (int block = 0; block < 2; ++block)
#pragma unroll
          for (int i = 0; i < kDimBlocks; ++i) {
            o[block][i][0] *= scale_o[2 * block];
            o[block][i][1] *= scale_o[2 * block];
            o[block][i][2] *= scale_o[2 * block + 1];
            o[block][i][3] *= scale_o[2 * block + 1];
          }
      }
#pragma unroll
      for (int kk = 0; kk < kChunkBlocks / 2; ++kk) {
        std::uint32_t pf[2][4];
#pragma unroll
        for (int block = 0; block < 2; ++block) {
          pf[block][0] = pack2<Element>(s[block][2 * kk][0], s[block][2 * kk][1]);
          pf[block][1] = pack2<Element>(s[block][2 * kk][2], s[block][2 * kk][3]);
          pf[block][2] = pack2<Element>(s[block][2 * kk + 1][0], s[block][2 * kk + 1][1]);
          pf[block][3] = pack2<Element>(s[block][2 * kk + 1][2], s[block][2 * kk + 1][3]);
        }
#pragma unroll
        for (int nd = 0; nd < kDimBlocks; nd += 2) {
          std::uint32_t vf[4];
          load_matrix_x4_transposed(vf, chunk_address(v_base, stage_offset, chunk * kChunkKeys + kk * 16, nd / 2));
#pragma unroll
          for (int block = 0; block < 2; ++block) {
            mma_16x8x16<Element>(o[block][nd], pf[block], vf[0], vf[1]);
            mma_16x8x16<Element>(o[block][nd + 1], pf[block], vf[2], vf[3]);
          }
        }
      }
    }

    if (cursor.part == kPartsPerTile - 1) {
      // The tile is done: this thread's vote; the CTA's OR comes with the next barrier.
      if (skipping) {
#pragma unroll
        for (int r = 0; r < 4; ++r)
          vote |= row_valid[r] && row_votes_keep(tile_max[r], reference[r], scale_log2, plan.threshold);
      }
      voted_tile = tile;
      ++visited;
    }
    advance(cursor);
  }
  if (voted_tile >= 0) {
    const bool any_keep = __syncthreads_or(vote) != 0;
    if (skipping && threadIdx.x == 0 && policy.writes_keep(voted_tile, any_keep))
      atomicOr(&write_row[voted_tile >> 5], 1u << (voted_tile & 31));
  }

  // Epilogue: normalize, write out (two elements per store) and lse, then the state row.
  auto* out = static_cast<Element*>(params.out) + b * params.out_strides.b + h * params.out_strides.h;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    // A row whose tiles were all skipped: out 0, lse -inf (never NaN).
    const float inv_sum = reciprocal_or_zero(sum);
    if (!row_valid[r]) continue;
    const int block = r / 2, half = r % 2;
    Element* out_row = out + std::int64_t(global_row[r]) * params.out_strides.l + col_in_quad;
#pragma unroll
    for (int nd = 0; nd < kDimBlocks; ++nd)
      *reinterpret_cast<std::uint32_t*>(out_row + nd * 8) =
          pack2<Element>(o[block][nd][2 * half] * inv_sum, o[block][nd][2 * half + 1] * inv_sum);
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
