// The CPU reference backend: method.md sections 1-5 and 7 written out plainly. Every other
// backend is tested against it, so it favours clarity; the tile loops are laid out so that the
// compiler vectorizes them (the innermost loop always runs over contiguous floats).
//
// One work item = one query tile of one (batch, head). Work items are independent, so the
// result does not depend on the number of threads.
#include <atomic>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "core/backends.hpp"
#include "core/element_io.hpp"
#include "core/skip_policy.hpp"
#include "core/parallel.hpp"

namespace liteattn {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Per-thread scratch for one query tile: q rows, one key tile (transposed), one value tile, the
// score tile, and the online-softmax state of every row.
struct Scratch {
  std::int64_t bm, bn, d;
  std::vector<float> q, k_t, v, s, acc, row_max, row_sum, stored_max;
  Scratch(std::int64_t bm_, std::int64_t bn_, std::int64_t d_)
      : bm(bm_), bn(bn_), d(d_), q(bm * d), k_t(d * bn), v(bn * d), s(bm * bn), acc(bm * d), row_max(bm),
        row_sum(bm), stored_max(bm) {}
};

class QueryTileRunner {
 public:
  QueryTileRunner(const AttentionArgs& args, const CallPlan& plan) : args_(args), plan_(plan) {}

  void run(std::int64_t work, Scratch& w) const {
    const CallPlan& p = plan_;
    const std::int64_t i = work % p.q_tiles;
    const std::int64_t h = (work / p.q_tiles) % p.heads;
    const std::int64_t b = work / (p.q_tiles * p.heads);
    const std::int64_t h_kv = h / (p.heads / p.kv_heads);
    const std::int64_t row0 = i * p.tile.m;
    const std::int64_t rows = std::min<std::int64_t>(p.tile.m, p.len_q - row0);
    const std::int64_t D = p.head_dim, Bn = p.tile.n;
    const SkipStateView& st = args_.state;

    // The state row of (b, h, i): read buffer by its own parity, write buffer the other one.
    const std::int64_t state_row = (b * p.heads + h) * p.q_tiles + i;
    const std::int64_t state_rows = p.batch * p.heads * p.q_tiles;
    const std::uint32_t visits = p.skipping ? st.row_visits[state_row] : 0u;
    const std::uint32_t* read_row = nullptr;
    std::uint32_t* write_row = nullptr;
    if (p.skipping) {
      const std::uint32_t read_buffer = visits & 1u;
      read_row = st.mask + (read_buffer * state_rows + state_row) * p.words;
      write_row = st.mask + ((1u - read_buffer) * state_rows + state_row) * p.words;
    }
    const QueryTilePolicy policy(p, i, read_row, visits);

    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t d = 0; d < D; ++d) w.q[r * D + d] = load_element(args_.q, offset_blh(args_.q, b, row0 + r, h) + d);
      w.row_max[r] = kNegInf;
      w.row_sum[r] = 0.0f;
      w.stored_max[r] = (p.skipping && st.row_max) ? st.row_max[(b * p.heads + h) * p.len_q + row0 + r]
                                                   : std::numeric_limits<float>::quiet_NaN();
    }
    std::fill(w.acc.begin(), w.acc.end(), 0.0f);
    std::vector<std::uint32_t> written(std::size_t(p.words), 0u);
    std::uint32_t computed = 0;

    for (std::int32_t pos = policy.next(0); pos < policy.k_tiles(); pos = policy.next(pos + 1)) {
      const std::int32_t j = policy.tile_at(pos);
      const std::int64_t col0 = std::int64_t(j) * Bn;
      const std::int64_t cols = std::min<std::int64_t>(Bn, p.len_k - col0);
      load_kv_tile(b, h_kv, col0, cols, w);
      scores(rows, cols, w);
      const bool keep = online_softmax_and_vote(rows, cols, w);
      if (policy.writes_keep(j, keep)) written[j >> 5] |= 1u << (j & 31);
      ++computed;
    }

    // Epilogue: normalize, write out and lse; rows that saw no tile get out 0 and lse -inf. A row
    // whose sum is NaN (NaN scores) gets NaN in both, as in the GPU kernels.
    for (std::int64_t r = 0; r < rows; ++r) {
      const float l = w.row_sum[r];
      const float inv = l == 0.0f ? 0.0f : 1.0f / l;
      const std::int64_t o = offset_blh(args_.out, b, row0 + r, h);
      for (std::int64_t d = 0; d < D; ++d) store_element(args_.out, o + d, w.acc[r * D + d] * inv);
      if (args_.lse.defined()) {
        const float lse = l == 0.0f ? kNegInf : w.row_max[r] * p.scale + std::log(l);
        args_.lse.ptr<float>()[(b * p.heads + h) * p.len_q + row0 + r] = lse;
      }
    }

    if (p.skipping) {
      for (std::int64_t word = 0; word < p.words; ++word) write_row[word] = written[word];
      if (st.row_max)
        for (std::int64_t r = 0; r < rows; ++r) st.row_max[(b * p.heads + h) * p.len_q + row0 + r] = w.row_max[r];
      st.row_visits[state_row] = visits + 1;
      std::atomic_ref<std::uint32_t>(st.kept[b * p.heads + h]).fetch_add(computed, std::memory_order_relaxed);
      if (st.cumulative)
        std::atomic_ref<std::int64_t>(st.cumulative[b * p.heads + h]).fetch_add(computed, std::memory_order_relaxed);
    }
  }

 private:
  void load_kv_tile(std::int64_t b, std::int64_t h_kv, std::int64_t col0, std::int64_t cols, Scratch& w) const {
    const std::int64_t D = plan_.head_dim, Bn = plan_.tile.n;
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t ko = offset_blh(args_.k, b, col0 + c, h_kv), vo = offset_blh(args_.v, b, col0 + c, h_kv);
      for (std::int64_t d = 0; d < D; ++d) {
        w.k_t[d * Bn + c] = load_element(args_.k, ko + d);
        w.v[c * D + d] = load_element(args_.v, vo + d);
      }
    }
  }

  // s[r][c] = q_r . k_c (raw, unscaled), for valid rows and columns.
  void scores(std::int64_t rows, std::int64_t cols, Scratch& w) const {
    const std::int64_t D = plan_.head_dim, Bn = plan_.tile.n;
    for (std::int64_t r = 0; r < rows; ++r) {
      float* s = &w.s[r * Bn];
      std::fill(s, s + cols, 0.0f);
      for (std::int64_t d = 0; d < D; ++d) {
        const float qd = w.q[r * D + d];
        const float* kt = &w.k_t[d * Bn];
        for (std::int64_t c = 0; c < cols; ++c) s[c] += qd * kt[c];
      }
    }
  }

  // The skip vote of every valid row against its reference, then the online-softmax update.
  // Returns whether any row voted keep.
  bool online_softmax_and_vote(std::int64_t rows, std::int64_t cols, Scratch& w) const {
    const CallPlan& p = plan_;
    const std::int64_t D = p.head_dim, Bn = p.tile.n;
    const float c2 = p.scale_log2;
    bool any_keep = false;
    for (std::int64_t r = 0; r < rows; ++r) {
      float* s = &w.s[r * Bn];
      float tile_max = kNegInf;
      bool has_nan = false;
      for (std::int64_t c = 0; c < cols; ++c) {
        tile_max = std::max(tile_max, s[c]);
        has_nan |= std::isnan(s[c]);
      }
      if (has_nan) tile_max = std::numeric_limits<float>::quiet_NaN();  // std::max drops NaN; the vote must see it

      const float reference = uses_running_reference(p.criterion, w.stored_max[r]) ? w.row_max[r] : w.stored_max[r];
      any_keep |= row_votes_keep(tile_max, reference, c2, p.threshold);

      // A NaN max poisons the row as dense attention would; -inf means nothing to accumulate yet.
      const float new_max = has_nan ? tile_max : std::max(w.row_max[r], tile_max);
      if (new_max == kNegInf) continue;
      const float alpha = std::exp2((w.row_max[r] - new_max) * c2);
      w.row_max[r] = new_max;
      float sum = 0.0f;
      for (std::int64_t c = 0; c < cols; ++c) {
        s[c] = std::exp2((s[c] - new_max) * c2);
        sum += s[c];
      }
      w.row_sum[r] = w.row_sum[r] * alpha + sum;
      float* acc = &w.acc[r * D];
      for (std::int64_t d = 0; d < D; ++d) acc[d] *= alpha;
      for (std::int64_t c = 0; c < cols; ++c) {
        const float pc = s[c];
        const float* v = &w.v[c * D];
        for (std::int64_t d = 0; d < D; ++d) acc[d] += pc * v[d];
      }
    }
    return any_keep;
  }

  const AttentionArgs& args_;
  const CallPlan& plan_;
};

}  // namespace

void run_cpu(const AttentionArgs& args, const CallPlan& plan) {
  if (plan.skipping) {
    for (std::int64_t n = 0; n < plan.batch * plan.heads; ++n) args.state.kept[n] = 0;
  }
  const QueryTileRunner runner(args, plan);
  const std::int64_t work_items = plan.batch * plan.heads * plan.q_tiles;
  const int workers = worker_count(args.cpu_threads, work_items);
  std::vector<Scratch> scratch;  // one per worker
  for (int t = 0; t < workers; ++t) scratch.emplace_back(plan.tile.m, plan.tile.n, plan.head_dim);
  parallel_for(work_items, workers, [&](int worker, std::int64_t work) { runner.run(work, scratch[worker]); });
}

}  // namespace liteattn
