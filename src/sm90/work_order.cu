// One CTA orders a skipping call's work tiles for the Hopper kernel's work counter: see
// work_order.hpp.
#include <cuda_runtime.h>

#include "cuda/runtime.hpp"
#include "sm90/tile_config.hpp"
#include "sm90/work_order.hpp"

namespace liteattn::sm90 {
namespace {

constexpr int kThreads = 1024;
constexpr int kMaxBuckets = kMaxMaskWords * 32 + 1;  // work 0 .. k_tiles
constexpr int kRowsPerPass = 4;                      // rows a thread counts at once (independent loads)

struct OrderParams {
  CallPlan plan;
  const std::uint32_t* mask;
  const std::uint32_t* row_visits;
  std::uint32_t* kept;       // the kept counts, zeroed
  std::uint32_t* counter;    // the work-tile counter, set to first_round
  std::uint32_t* order;
  std::int32_t pairs;        // batch * heads
  std::int32_t rows;         // pairs * q_tiles: the work tiles
  std::int32_t first_round;  // positions 0 .. first_round - 1: work tiles in index order, run first
  std::int32_t short_tail;
};

struct RowCounter {
  const OrderParams& p;
  // Key tiles that row's read mask keeps, given the row's call counter; every one for a dense
  // query tile.
  __device__ std::int32_t finish(std::int32_t row, std::int32_t popcount) const {
    const auto k_tiles = std::int32_t(p.plan.k_tiles);
    if (p.plan.dense_queries.contains(std::int32_t(row % p.plan.q_tiles))) return k_tiles;
    return popcount < k_tiles ? popcount : k_tiles;
  }
  __device__ const std::uint32_t* read_row(std::int32_t row, std::uint32_t visits) const {
    return p.mask + ((visits & 1u) * std::int64_t(p.rows) + row) * p.plan.words;
  }
  __device__ std::int32_t work(std::int32_t row) const {
    const std::uint32_t* words = read_row(row, p.row_visits[row]);
    std::int32_t n = 0;
    for (std::int64_t w = 0; w < p.plan.words; ++w) n += __popc(words[w]);
    return finish(row, n);
  }
};

// Exclusive prefix sum of one value per thread over the whole block (every thread calls it).
__device__ __forceinline__ std::int32_t block_exclusive_sum(std::int32_t value, std::int32_t* warp_totals) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  std::int32_t inclusive = value;
  for (int offset = 1; offset < 32; offset <<= 1) {
    const std::int32_t below = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += below;
  }
  if (lane == 31) warp_totals[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    std::int32_t total = warp_totals[lane];  // kThreads / 32 == 32 warps
    for (int offset = 1; offset < 32; offset <<= 1) {
      const std::int32_t below = __shfl_up_sync(0xffffffffu, total, offset);
      if (lane >= offset) total += below;
    }
    warp_totals[lane] = total;  // inclusive over the warps
  }
  __syncthreads();
  return inclusive - value + (warp > 0 ? warp_totals[warp - 1] : 0);
}

__global__ void __launch_bounds__(kThreads, 1) order_work_tiles(const __grid_constant__ OrderParams p) {
  // The attention kernel launched after this one may start its CTAs now: they run their first work
  // tiles, and their skip-state warps wait for this grid's results before reading them
  // (griddepcontrol.wait).
  asm volatile("griddepcontrol.launch_dependents;");
  static_assert(kMaxOrderedHeads <= kThreads && kThreads == 32 * 32, "one pair's rank per thread in the scan");
  __shared__ std::uint32_t pair_work[kMaxOrderedHeads];
  __shared__ std::int32_t pair_at_rank[kMaxOrderedHeads];
  __shared__ std::int32_t pair_start[kMaxOrderedHeads];  // a pair's first position
  __shared__ std::int32_t warp_totals[32];
  __shared__ std::int32_t bucket[kMaxBuckets];  // tail rows per work, then each work's next position
  __shared__ std::uint16_t tail_work[kMaxShortTail];
  __shared__ std::int32_t tail_row[kMaxShortTail];
  const int thread = threadIdx.x, lane = thread % 32;
  const auto q_tiles = std::int32_t(p.plan.q_tiles), k_tiles = std::int32_t(p.plan.k_tiles);
  const RowCounter counter{p};
  const bool order_pairs = p.pairs <= kMaxOrderedHeads;
  // The query tiles of a pair that the first round runs: its first ones, in index order.
  auto first_round_tiles = [&](std::int32_t pair) {
    const std::int32_t n = p.first_round - pair * q_tiles;
    return n < 0 ? 0 : (n < q_tiles ? n : q_tiles);
  };

  for (std::int32_t i = thread; i < p.pairs; i += kThreads) p.kept[i] = 0u;
  if (thread == 0) *p.counter = std::uint32_t(p.first_round);
  for (std::int32_t i = thread; i < p.first_round; i += kThreads) p.order[i] = std::uint32_t(i);
  for (std::int32_t c = thread; c <= k_tiles; c += kThreads) bucket[c] = 0;
  if (order_pairs)
    for (std::int32_t i = thread; i < p.pairs; i += kThreads) pair_work[i] = 0u;
  __syncthreads();

  if (order_pairs) {
    // Each pair's work after the first round; a pair's rank: how many pairs have more (ties in
    // index order); a pair's first position: the work tiles of the pairs ranked above it.
    for (std::int32_t first = p.first_round + thread; first < p.rows; first += kThreads * kRowsPerPass) {
      std::uint32_t visits[kRowsPerPass];
      std::int32_t popcount[kRowsPerPass];
#pragma unroll
      for (int k = 0; k < kRowsPerPass; ++k) {
        const std::int32_t row = first + k * kThreads;
        visits[k] = row < p.rows ? p.row_visits[row] : 0u;
        popcount[k] = 0;
      }
      for (std::int64_t w = 0; w < p.plan.words; ++w) {
#pragma unroll
        for (int k = 0; k < kRowsPerPass; ++k) {
          const std::int32_t row = first + k * kThreads;
          if (row < p.rows) popcount[k] += __popc(counter.read_row(row, visits[k])[w]);
        }
      }
#pragma unroll
      for (int k = 0; k < kRowsPerPass; ++k) {
        const std::int32_t row = first + k * kThreads;
        if (row < p.rows) atomicAdd(&pair_work[row / q_tiles], std::uint32_t(counter.finish(row, popcount[k])));
      }
    }
    __syncthreads();
    for (std::int32_t i = thread; i < p.pairs; i += kThreads) {
      const std::uint32_t mine = pair_work[i];
      std::int32_t rank = 0;
      for (std::int32_t j = 0; j < p.pairs; ++j) {
        const std::uint32_t theirs = pair_work[j];
        rank += theirs > mine || (theirs == mine && j < i);
      }
      pair_at_rank[rank] = i;
    }
    __syncthreads();
    const std::int32_t pair = thread < p.pairs ? pair_at_rank[thread] : 0;  // thread = rank
    const std::int32_t start = block_exclusive_sum(thread < p.pairs ? q_tiles - first_round_tiles(pair) : 0, warp_totals);
    if (thread < p.pairs) pair_start[pair] = start;
    __syncthreads();
  }
  // The positions of the work tiles after the first round: pair by pair in rank order, each
  // pair's query tiles in index order.
  auto position_of = [&](std::int32_t row) {
    if (!order_pairs) return row;
    const std::int32_t pair = row / q_tiles;
    return p.first_round + pair_start[pair] + row % q_tiles - first_round_tiles(pair);
  };

  // Positions before the tail take their work tile now; the tail's work tiles are sorted by work.
  const std::int32_t later = p.rows - p.first_round;
  std::int32_t tail = p.short_tail < later ? p.short_tail : later;
  tail = tail < kMaxShortTail ? tail : kMaxShortTail;
  const std::int32_t tail_begin = p.rows - tail;
  for (std::int32_t row = p.first_round + thread; row < p.rows; row += kThreads) {
    const std::int32_t position = position_of(row);
    if (position < tail_begin) {
      p.order[position] = std::uint32_t(row);
    } else {
      const std::int32_t i = position - tail_begin;
      // Counted again (the pair ranking counted it too): which rows form the tail is known only
      // after the ranking, and recounting at most kMaxShortTail rows costs less than keeping
      // every row's count until then.
      const std::int32_t work = counter.work(row);
      tail_row[i] = row;
      tail_work[i] = std::uint16_t(work);
      atomicAdd(&bucket[work], 1);
    }
  }
  __syncthreads();

  // Each work's first tail position, largest work first: warp 0, each lane a segment of the
  // buckets, the segments' totals scanned from the top.
  if (thread < 32) {
    const std::int32_t per_lane = (k_tiles + 1 + 31) / 32;
    const std::int32_t begin = lane * per_lane;
    const std::int32_t end = begin + per_lane < k_tiles + 1 ? begin + per_lane : k_tiles + 1;
    std::int32_t sum = 0;
    for (std::int32_t c = begin; c < end; ++c) sum += bucket[c];
    std::int32_t from_top = sum;  // this segment and every one above it
    for (int offset = 1; offset < 32; offset <<= 1) {
      const std::int32_t above = __shfl_down_sync(0xffffffffu, from_top, offset);
      if (lane + offset < 32) from_top += above;
    }
    std::int32_t next = tail_begin + from_top - sum;
    for (std::int32_t c = end - 1; c >= begin; --c) {
      const std::int32_t n = bucket[c];
      bucket[c] = next;
      next += n;
    }
  }
  __syncthreads();
  for (std::int32_t i = thread; i < tail; i += kThreads)
    p.order[atomicAdd(&bucket[tail_work[i]], 1)] = std::uint32_t(tail_row[i]);
}

}  // namespace

void enqueue_work_order(const SkipStateView& state, const CallPlan& plan, std::int64_t grid, void* stream) {
  OrderParams p{};
  p.plan = plan;
  p.mask = state.mask;
  p.row_visits = state.row_visits;
  p.kept = state.kept;
  p.counter = state.kept + state.key.work_counter_offset();
  p.order = state.kept + state.key.work_order_offset();
  p.pairs = std::int32_t(plan.batch * plan.heads);
  p.rows = std::int32_t(state.key.rows());
  p.first_round = std::int32_t(grid < p.rows ? grid : p.rows);
  p.short_tail = std::int32_t(kShortTailRounds * grid);
  order_work_tiles<<<1, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  LITEATTN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace liteattn::sm90
