// The Hopper kernel's work order (src/sm90/work_order.hpp), checked against a host recomputation
// on synthetic skip states: the first round (one work tile per CTA, in index order), then (batch,
// head) pairs by their work after it, query tiles in index order, the last positions by work,
// largest first; the kept counts zeroed and the work-tile counter set past the first round; the
// read buffer each row's counter picks. Runs where the Hopper kernel does (under either --backend:
// it is not a backend's behaviour).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "core/plan.hpp"
#include "liteattn/liteattn.hpp"
#include "reference_helpers.hpp"
#include "sm90/work_order.hpp"

namespace {

using liteattn::CallPlan;
using liteattn::SkipState;
using liteattn::StateKey;

bool hopper_available() {
  const auto backends = liteattn::available_backends();
  return std::find(backends.begin(), backends.end(), liteattn::Backend::sm90) != backends.end();
}

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

struct Case {
  std::int64_t grid;                   // the kernel's CTAs: the last kShortTailRounds * grid positions are sorted
  int dense_first = 0, dense_end = 0;  // dense query tiles [first, end)
};

StateKey hopper_key(std::int64_t batch, std::int64_t heads, std::int64_t len_q, std::int64_t len_k) {
  return lt::make_state_key(batch, heads, len_q, len_k,
                            liteattn::tile_shape(liteattn::Backend::sm90, 128, liteattn::DType::bf16), false,
                            {liteattn::DeviceKind::cuda, 0});
}

// Writes a synthetic state for `key`, runs the work-order kernel and compares its order with the
// host's. Pairs are ordered by their work only up to kMaxOrderedHeads pairs.
void check_work_order(const StateKey& key, const Case c) {
  const std::int64_t rows = key.rows(), words = key.words_per_row(), nk = key.k_tiles(), nq = key.q_tiles();
  SCOPED_TRACE("rows " + std::to_string(rows) + ", grid " + std::to_string(c.grid) + ", dense query tiles [" +
               std::to_string(c.dense_first) + ", " + std::to_string(c.dense_end) + ")");
  SkipState state;
  state.prepare(key);
  const auto& view = state.view();

  // Each row keeps a random number of key tiles in the buffer its counter reads, scaled per (batch,
  // head) pair so that pairs differ (a fifth keep nothing: ties), and random bits in the other
  // buffer.
  std::mt19937_64 rng(std::uint64_t(c.grid) * 7 + std::uint64_t(c.dense_first));
  std::vector<std::uint32_t> mask(std::size_t(2 * rows * words), 0u), visits(static_cast<std::size_t>(rows));
  std::vector<std::int64_t> work(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    visits[std::size_t(r)] = std::uint32_t(rng() % 5);
    const std::int64_t read = visits[std::size_t(r)] & 1u;
    std::vector<std::int64_t> tiles(static_cast<std::size_t>(nk));
    for (std::int64_t j = 0; j < nk; ++j) tiles[std::size_t(j)] = j;
    std::shuffle(tiles.begin(), tiles.end(), rng);
    const std::int64_t pair = r / nq;
    const std::int64_t kept = std::int64_t(rng() % std::uint64_t(nk + 1)) * (pair % 5) / 4;
    for (std::int64_t t = 0; t < kept; ++t) {
      const std::int64_t j = tiles[std::size_t(t)];
      mask[std::size_t((read * rows + r) * words + j / 32)] |= 1u << (j % 32);
    }
    for (std::int64_t j = 0; j < nk; ++j)
      if (rng() % 2) mask[std::size_t(((1 - read) * rows + r) * words + j / 32)] |= 1u << (j % 32);
    const std::int64_t query_tile = r % nq;
    work[std::size_t(r)] = query_tile >= c.dense_first && query_tile < c.dense_end ? nk : kept;
  }
  cuda_ok(cudaMemcpy(view.mask, mask.data(), mask.size() * 4, cudaMemcpyHostToDevice), "mask");
  cuda_ok(cudaMemcpy(view.row_visits, visits.data(), visits.size() * 4, cudaMemcpyHostToDevice), "row_visits");
  cuda_ok(cudaMemset(view.kept, 0xab, key.kept_bytes()), "kept poison");

  CallPlan plan;
  plan.batch = key.batch;
  plan.heads = key.heads;
  plan.q_tiles = nq;
  plan.k_tiles = nk;
  plan.words = words;
  if (c.dense_end > c.dense_first) {
    plan.dense_queries.count = 1;
    plan.dense_queries.begin[0] = c.dense_first;
    plan.dense_queries.end[0] = c.dense_end;
  }
  liteattn::sm90::enqueue_work_order(view, plan, c.grid, nullptr);
  std::vector<std::uint32_t> kept(static_cast<std::size_t>(key.kept_words()));
  cuda_ok(cudaMemcpy(kept.data(), view.kept, key.kept_bytes(), cudaMemcpyDeviceToHost), "kept");

  // The kept counts zeroed; the counter set past the first round (work tiles 0 .. first - 1 at
  // positions 0 .. first - 1, in index order: the kernel's CTAs run them while the order is written).
  const std::int64_t offset = key.work_order_offset(), first = std::min(c.grid, rows);
  for (std::int64_t i = 0; i < key.work_counter_offset(); ++i)
    ASSERT_EQ(kept[std::size_t(i)], 0u) << "kept word " << i << " not zeroed";
  ASSERT_EQ(kept[std::size_t(key.work_counter_offset())], std::uint32_t(first)) << "the work-tile counter";

  // The later positions: pairs by their total work after the first round, largest first (ties in
  // index order), query tiles in index order.
  const std::int64_t pairs = key.batch * key.heads;
  std::vector<std::int64_t> pair_work(std::size_t(pairs), 0), by_rank(static_cast<std::size_t>(pairs));
  for (std::int64_t r = first; r < rows; ++r) pair_work[std::size_t(r / nq)] += work[std::size_t(r)];
  for (std::int64_t i = 0; i < pairs; ++i) by_rank[std::size_t(i)] = i;
  if (pairs <= liteattn::sm90::kMaxOrderedHeads)
    std::stable_sort(by_rank.begin(), by_rank.end(), [&](std::int64_t a, std::int64_t b) {
      return pair_work[std::size_t(a)] > pair_work[std::size_t(b)];
    });
  std::vector<std::uint32_t> expected;
  for (std::int64_t r = 0; r < first; ++r) expected.push_back(std::uint32_t(r));
  for (const std::int64_t pair : by_rank)
    for (std::int64_t r = std::max(pair * nq, first); r < (pair + 1) * nq; ++r) expected.push_back(std::uint32_t(r));
  ASSERT_EQ(std::int64_t(expected.size()), rows);
  // The last positions after the first round: the same work tiles, largest work first.
  const std::int64_t tail = std::min<std::int64_t>(
      {liteattn::sm90::kShortTailRounds * c.grid, rows - first, liteattn::sm90::kMaxShortTail});
  const std::int64_t tail_begin = rows - tail;

  const std::vector<std::uint32_t> order(kept.begin() + offset, kept.end());
  for (std::int64_t position = 0; position < tail_begin; ++position)
    ASSERT_EQ(order[std::size_t(position)], expected[std::size_t(position)]) << "position " << position;
  std::vector<std::uint32_t> tail_rows(order.begin() + tail_begin, order.end());
  std::vector<std::uint32_t> expected_tail(expected.begin() + tail_begin, expected.end());
  std::sort(tail_rows.begin(), tail_rows.end());
  std::sort(expected_tail.begin(), expected_tail.end());
  ASSERT_EQ(tail_rows, expected_tail) << "the last " << tail << " positions hold other work tiles";
  for (std::int64_t position = tail_begin + 1; position < rows; ++position)
    ASSERT_GE(work[order[std::size_t(position - 1)]], work[order[std::size_t(position)]])
        << "tail position " << position << " is not largest work first";
}

TEST(WorkOrder, HeavyHeadsFirstAndTheLastPositionsLargestWorkFirst) {
  if (!hopper_available()) GTEST_SKIP() << "no GPU that runs the Hopper kernel";
  // 2 x 20 pairs of 40 query tiles (the last one partial) and 50 key tiles.
  const StateKey key = hopper_key(2, 20, 40 * 128 - 5, 50 * 144);
  ASSERT_EQ(key.tile.m, 128);
  ASSERT_EQ(key.tile.n, 144);
  ASSERT_EQ(key.rows(), 1600);
  for (const Case c : {Case{132}, Case{132, 3, 6}, Case{1}, Case{1000}, Case{1600}, Case{2000}}) check_work_order(key, c);
}

TEST(WorkOrder, PairsPastTheLimitKeepIndexOrder) {
  if (!hopper_available()) GTEST_SKIP() << "no GPU that runs the Hopper kernel";
  for (const std::int64_t q_tiles : {1, 3}) {  // 1200 pairs
    const StateKey key = hopper_key(3, 400, q_tiles * 128 - 28, 40 * 144);
    ASSERT_GT(key.batch * key.heads, liteattn::sm90::kMaxOrderedHeads);
    check_work_order(key, Case{132});
  }
}

TEST(WorkOrder, LongRowsManyWorkTilesAndTheTailCap) {
  if (!hopper_available()) GTEST_SKIP() << "no GPU that runs the Hopper kernel";
  // 4800 work tiles (more than one counting pass of the kernel's threads) of 300 key tiles (10 words
  // a row), a tail capped at kMaxShortTail positions.
  const StateKey many = hopper_key(1, 8, 600 * 128, 300 * 144);
  ASSERT_GT(liteattn::sm90::kShortTailRounds * 600, liteattn::sm90::kMaxShortTail);
  check_work_order(many, Case{600});
  // The longest rows the kernel takes (2048 key tiles, 64 words).
  check_work_order(hopper_key(1, 2, 8 * 128, 2048 * 144), Case{1});
}

}  // namespace
