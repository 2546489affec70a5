#include "fp64_reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/skip_policy.hpp"

namespace liteattn::cli {

Fp64Result fp64_replay(const CallPlan& p, const Fp64Inputs& in) {
  const std::int64_t B = p.batch, Lq = p.len_q, Lk = p.len_k, H = p.heads, Hkv = p.kv_heads, D = p.head_dim;
  const std::int64_t nq = p.q_tiles, nk = p.k_tiles, words = p.words;
  const double inf = std::numeric_limits<double>::infinity();
  const double scale_log2 = double(p.scale) / std::log(2.0);
  Fp64Result r;
  r.out.assign(std::size_t(B * Lq * H * D), 0.0);
  r.lse.assign(std::size_t(B * H * Lq), -inf);
  r.written.assign(std::size_t(B * H * nq * words), 0u);
  r.margin.assign(std::size_t(B * H * nq * nk), inf);

  auto q_at = [&](std::int64_t b, std::int64_t l, std::int64_t h) { return &(*in.q)[std::size_t(((b * Lq + l) * H + h) * D)]; };
  auto kv_at = [&](const std::vector<float>& t, std::int64_t b, std::int64_t l, std::int64_t h) {
    return &t[std::size_t(((b * Lk + l) * Hkv + h) * D)];
  };

  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < nq; ++i) {
        const std::int64_t row = (b * H + h) * nq + i;
        const std::uint32_t* read = in.read_mask ? &(*in.read_mask)[std::size_t(row * words)] : nullptr;
        const QueryTilePolicy policy(p, i, read, in.row_visits ? (*in.row_visits)[std::size_t(row)] : 0u);
        const std::int64_t r0 = i * p.tile.m, rows = std::min<std::int64_t>(p.tile.m, Lq - r0);
        std::vector<double> running(std::size_t(rows), -inf);
        std::vector<std::vector<double>> scores(static_cast<std::size_t>(rows));
        std::vector<std::int64_t> columns;  // the keys of visited tiles, in visit order
        for (std::int32_t pos = policy.next(0); pos < policy.k_tiles(); pos = policy.next(pos + 1)) {
          const std::int32_t j = policy.tile_at(pos);
          const std::int64_t c0 = std::int64_t(j) * p.tile.n, cols = std::min<std::int64_t>(p.tile.n, Lk - c0);
          double best = -inf;  // max over rows of (m_loc - ref) * c
          for (std::int64_t rr = 0; rr < rows; ++rr) {
            double m_loc = -inf;
            for (std::int64_t c = 0; c < cols; ++c) {
              const float* qr = q_at(b, r0 + rr, h);
              const float* kc = kv_at(*in.k, b, c0 + c, h / (H / Hkv));
              double s = 0;
              for (std::int64_t d = 0; d < D; ++d) s += double(qr[d]) * double(kc[d]);
              scores[std::size_t(rr)].push_back(s);
              m_loc = std::max(m_loc, s);
            }
            const float stored = in.stored_row_max ? (*in.stored_row_max)[std::size_t((b * H + h) * Lq + r0 + rr)]
                                                   : std::numeric_limits<float>::quiet_NaN();
            const double ref = uses_running_reference(p.criterion, stored) ? running[std::size_t(rr)] : double(stored);
            const double x = (m_loc - ref) * scale_log2;
            best = std::max(best, std::isnan(x) ? inf : x);
            running[std::size_t(rr)] = std::max(running[std::size_t(rr)], m_loc);
          }
          for (std::int64_t c = 0; c < cols; ++c) columns.push_back(c0 + c);
          const bool keep = best > double(p.threshold);
          r.margin[std::size_t(row * nk + j)] = std::isinf(best) ? inf : std::fabs(best - double(p.threshold));
          if (policy.writes_keep(j, keep)) r.written[std::size_t(row * words + j / 32)] |= 1u << (j % 32);
        }
        // Dense softmax over the visited keys, in fp64.
        for (std::int64_t rr = 0; rr < rows; ++rr) {
          const auto& s = scores[std::size_t(rr)];
          if (s.empty()) continue;
          const double m = *std::max_element(s.begin(), s.end());
          double l = 0;
          std::vector<double> acc(std::size_t(D), 0.0);
          for (std::size_t n = 0; n < s.size(); ++n) {
            const double w = std::exp((s[n] - m) * double(p.scale));
            l += w;
            const float* vc = kv_at(*in.v, b, columns[n], h / (H / Hkv));
            for (std::int64_t d = 0; d < D; ++d) acc[std::size_t(d)] += w * double(vc[d]);
          }
          for (std::int64_t d = 0; d < D; ++d)
            r.out[std::size_t(((b * Lq + r0 + rr) * H + h) * D + d)] = acc[std::size_t(d)] / l;
          r.lse[std::size_t((b * H + h) * Lq + r0 + rr)] = m * double(p.scale) + std::log(l);
        }
      }
  return r;
}

}  // namespace liteattn::cli
