#include "reference_helpers.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numbers>

namespace lt {

using liteattn::TensorView;
using liteattn::TokenRange;

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
}

// --- tensors -------------------------------------------------------------------------------

HostTensor::HostTensor(DType dtype, std::array<i64, 4> shape, i64 pad) : dtype_(dtype), shape_(shape) {
  stride_[3] = 1;
  stride_[2] = shape[3] + pad;
  stride_[1] = stride_[2] * shape[2];
  stride_[0] = stride_[1] * shape[1];
  storage_.assign(std::size_t(stride_[0] * shape[0]) * liteattn::dtype_size(dtype), 0);
}

TensorView HostTensor::view() const {
  TensorView t;
  t.data = storage_.data();
  t.dtype = dtype_;
  t.rank = 4;
  t.shape = shape_;
  t.stride = stride_;
  return t;
}

float HostTensor::get(i64 a, i64 b, i64 c, i64 d) const {
  const i64 o = offset(a, b, c, d);
  switch (dtype_) {
    case DType::f32: {
      float x;
      std::memcpy(&x, storage_.data() + o * 4, 4);
      return x;
    }
    case DType::bf16:
    case DType::f16: {
      std::uint16_t h;
      std::memcpy(&h, storage_.data() + o * 2, 2);
      return dtype_ == DType::bf16 ? liteattn::bf16_to_float(h) : liteattn::f16_to_float(h);
    }
  }
  return 0.0f;
}

void HostTensor::set(i64 a, i64 b, i64 c, i64 d, float value) {
  const i64 o = offset(a, b, c, d);
  switch (dtype_) {
    case DType::f32: std::memcpy(storage_.data() + o * 4, &value, 4); return;
    case DType::bf16: {
      const std::uint16_t h = liteattn::float_to_bf16(value);
      std::memcpy(storage_.data() + o * 2, &h, 2);
      return;
    }
    case DType::f16: {
      const std::uint16_t h = liteattn::float_to_f16(value);
      std::memcpy(storage_.data() + o * 2, &h, 2);
      return;
    }
  }
}

void HostTensor::fill(float value) {
  for (i64 a = 0; a < shape_[0]; ++a)
    for (i64 b = 0; b < shape_[1]; ++b)
      for (i64 c = 0; c < shape_[2]; ++c)
        for (i64 d = 0; d < shape_[3]; ++d) set(a, b, c, d, value);
}

void HostTensor::fill_normal(std::mt19937_64& rng, float stddev) {
  std::normal_distribution<float> dist(0.0f, stddev);
  for (i64 a = 0; a < shape_[0]; ++a)
    for (i64 b = 0; b < shape_[1]; ++b)
      for (i64 c = 0; c < shape_[2]; ++c)
        for (i64 d = 0; d < shape_[3]; ++d) set(a, b, c, d, dist(rng));
}

TensorView LseTensor::view() const {
  TensorView t;
  t.data = const_cast<float*>(data.data());
  t.dtype = DType::f32;
  t.rank = 3;
  t.shape = {B, H, L, 0};
  t.stride = {H * L, L, 1, 0};
  return t;
}

Problem::Problem(i64 B_, i64 Lq_, i64 Lk_, i64 H_, i64 Hkv_, i64 D_, DType dtype_, i64 pad_)
    : B(B_), Lq(Lq_), Lk(Lk_), H(H_), Hkv(Hkv_), D(D_), dtype(dtype_), pad(pad_),
      q(dtype_, {B_, Lq_, H_, D_}, pad_), k(dtype_, {B_, Lk_, Hkv_, D_}, pad_), v(dtype_, {B_, Lk_, Hkv_, D_}, pad_),
      out(dtype_, {B_, Lq_, H_, D_}, pad_), lse(B_, H_, Lq_) {}

void Problem::randomize(std::uint64_t seed, float q_std, float k_std) {
  std::mt19937_64 rng(seed);
  q.fill_normal(rng, q_std);
  k.fill_normal(rng, k_std);
  v.fill_normal(rng, 1.0f);
}

void Problem::add_locality(double a) {
  const double root = std::pow(double(D), 0.25);
  const double centre = 0.5 * double(Lk - 1);
  for (i64 b = 0; b < B; ++b)
    for (i64 h = 0; h < H; ++h) {
      const i64 h_kv = h / (H / Hkv);
      const double ah = a / double(h_kv + 1);
      for (i64 l = 0; l < Lq; ++l) {
        const double x = double(l) * double(Lk) / double(Lq) - centre;
        q.set(b, l, h, 0, float(root * std::sqrt(2.0 * ah) * x));
        q.set(b, l, h, 1, float(root));
      }
      if (h % (H / Hkv) != 0) continue;
      for (i64 c = 0; c < Lk; ++c) {
        const double y = double(c) - centre;
        k.set(b, c, h_kv, 0, float(root * std::sqrt(2.0 * ah) * y));
        k.set(b, c, h_kv, 1, float(-root * ah * y * y));
      }
    }
}

liteattn::AttentionArgs Problem::args(bool with_lse) const {
  liteattn::AttentionArgs a;
  a.q = q.view();
  a.k = k.view();
  a.v = v.view();
  a.out = out.view();
  if (with_lse) a.lse = lse.view();
  a.skip.enabled = false;
  return a;
}

// --- dense fp64 reference ------------------------------------------------------------------

namespace {

// Inputs as fp64 arrays, contiguous (B, L, H, D).
std::vector<double> to_double(const HostTensor& t) {
  const auto& s = t.shape();
  std::vector<double> out(std::size_t(s[0] * s[1] * s[2] * s[3]));
  std::size_t n = 0;
  for (i64 a = 0; a < s[0]; ++a)
    for (i64 b = 0; b < s[1]; ++b)
      for (i64 c = 0; c < s[2]; ++c)
        for (i64 d = 0; d < s[3]; ++d) out[n++] = t.get(a, b, c, d);
  return out;
}

// Raw q.k of query row (b, l, h) against key position (b, c, h_kv).
double dot(const std::vector<double>& q, const std::vector<double>& k, const Problem& p, i64 b, i64 l, i64 h, i64 c) {
  const i64 h_kv = h / (p.H / p.Hkv);
  const double* qr = &q[std::size_t(((b * p.Lq + l) * p.H + h) * p.D)];
  const double* kr = &k[std::size_t(((b * p.Lk + c) * p.Hkv + h_kv) * p.D)];
  double s = 0.0;
  for (i64 d = 0; d < p.D; ++d) s += qr[d] * kr[d];
  return s;
}

}  // namespace

Reference reference_attention(const Problem& p, double scale, TileShape tile, const TileKeep& keep) {
  Reference ref;
  ref.B = p.B, ref.Lq = p.Lq, ref.H = p.H, ref.D = p.D;
  ref.out.assign(std::size_t(p.B * p.Lq * p.H * p.D), 0.0);
  ref.lse.assign(std::size_t(p.B * p.H * p.Lq), -kInf);
  const auto q = to_double(p.q), k = to_double(p.k), v = to_double(p.v);
  std::vector<double> logits(std::size_t(p.Lk));
  std::vector<char> use(std::size_t(p.Lk));
  for (i64 b = 0; b < p.B; ++b)
    for (i64 h = 0; h < p.H; ++h) {
      const i64 h_kv = h / (p.H / p.Hkv);
      for (i64 l = 0; l < p.Lq; ++l) {
        const i64 i = l / tile.m;
        double m = -kInf;
        bool any = false;
        for (i64 c = 0; c < p.Lk; ++c) {
          use[c] = !keep || keep(b, h, i, c / tile.n);
          if (!use[c]) continue;
          any = true;
          logits[c] = scale * dot(q, k, p, b, l, h, c);
          m = std::max(m, logits[c]);
          if (std::isnan(logits[c])) m = logits[c];
        }
        if (!any) continue;  // out 0, lse -inf
        double sum = 0.0;
        double* o = &ref.out[std::size_t(((b * p.Lq + l) * p.H + h) * p.D)];
        for (i64 c = 0; c < p.Lk; ++c) {
          if (!use[c]) continue;
          const double w = std::exp(logits[c] - m);
          sum += w;
          const double* vr = &v[std::size_t(((b * p.Lk + c) * p.Hkv + h_kv) * p.D)];
          for (i64 d = 0; d < p.D; ++d) o[d] += w * vr[d];
        }
        for (i64 d = 0; d < p.D; ++d) o[d] /= sum;
        ref.lse[std::size_t((b * p.H + h) * p.Lq + l)] = m + std::log(sum);
      }
    }
  return ref;
}

double rel_l2(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t n = 0; n < a.size(); ++n) {
    if (std::isinf(a[n]) || std::isinf(b[n])) {
      if (a[n] == b[n]) continue;
      return kInf;
    }
    num += (a[n] - b[n]) * (a[n] - b[n]);
    den += b[n] * b[n];
  }
  if (std::isnan(num)) return kInf;
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

double rel_l2_out(const HostTensor& out, const Reference& ref) {
  std::vector<double> a;
  a.reserve(ref.out.size());
  for (i64 b = 0; b < ref.B; ++b)
    for (i64 l = 0; l < ref.Lq; ++l)
      for (i64 h = 0; h < ref.H; ++h)
        for (i64 d = 0; d < ref.D; ++d) a.push_back(out.get(b, l, h, d));
  return rel_l2(a, ref.out);
}

double rel_l2_lse(const LseTensor& lse, const Reference& ref) {
  std::vector<double> a(lse.data.begin(), lse.data.end());
  return rel_l2(a, ref.lse);
}

// --- masks ---------------------------------------------------------------------------------

MaskGeometry::MaskGeometry(i64 B_, i64 H_, i64 Lq, i64 Lk, TileShape tile)
    : B(B_), H(H_), nq((Lq + tile.m - 1) / tile.m), nk((Lk + tile.n - 1) / tile.n), words((nk + 31) / 32) {}

bool bit(const std::vector<std::uint32_t>& mask, const MaskGeometry& g, i64 b, i64 h, i64 i, i64 j) {
  return (mask[std::size_t(g.row(b, h, i) * g.words + j / 32)] >> (j % 32)) & 1u;
}

i64 popcount(const std::vector<std::uint32_t>& mask) {
  i64 n = 0;
  for (auto w : mask) n += std::popcount(w);
  return n;
}

std::vector<i64> visit_order(Order order, i64 query_tile, i64 Lq, i64 Lk, TileShape tile) {
  const i64 nk = (Lk + tile.n - 1) / tile.n;
  std::vector<i64> tiles(static_cast<std::size_t>(nk));
  for (i64 j = 0; j < nk; ++j) tiles[j] = j;
  if (order == Order::descending) std::reverse(tiles.begin(), tiles.end());
  if (order == Order::diagonal) {
    const i64 first = query_tile * tile.m;
    const i64 rows = std::min<i64>(tile.m, Lq - first);
    const i64 j0 = std::min<i64>(nk - 1, (first + rows / 2) * Lk / Lq / tile.n);
    std::stable_sort(tiles.begin(), tiles.end(), [j0](i64 a, i64 b) {
      const i64 da = a > j0 ? a - j0 : j0 - a, db = b > j0 ? b - j0 : j0 - b;
      if (da != db) return da < db;
      return a > b;  // j0 + d before j0 - d
    });
  }
  return tiles;
}

std::vector<bool> tiles_overlapping(const std::vector<TokenRange>& ranges, i64 L, i64 bn) {
  const i64 n = (L + bn - 1) / bn;
  std::vector<bool> out(std::size_t(n), false);
  for (i64 j = 0; j < n; ++j)
    for (i64 t = j * bn; t < std::min(L, (j + 1) * bn); ++t)
      for (const auto& r : ranges)
        if (t >= r.begin && t < r.end) out[j] = true;
  return out;
}

std::vector<bool> tiles_covered(const std::vector<TokenRange>& ranges, i64 L, i64 bn) {
  const i64 n = (L + bn - 1) / bn;
  std::vector<bool> out(std::size_t(n), false);
  for (i64 j = 0; j < n; ++j) {
    bool all = true;
    for (i64 t = j * bn; t < std::min(L, (j + 1) * bn); ++t) {
      bool in = false;
      for (const auto& r : ranges) in |= (t >= r.begin && t < r.end);
      all &= in;
    }
    out[j] = all;
  }
  return out;
}

VoteResult expected_votes(const Problem& p, const VoteCall& call, double tol) {
  const MaskGeometry g(p.B, p.H, p.Lq, p.Lk, call.tile);
  const i64 bm = call.tile.m, bn = call.tile.n;
  const double c = call.scale * std::numbers::log2e;
  const auto must_do = tiles_overlapping(call.must_do, p.Lk, bn);
  const auto must_skip = tiles_covered(call.must_skip, p.Lk, bn);
  const auto dense_q = tiles_overlapping(call.dense_queries, p.Lq, bm);
  const auto q = to_double(p.q), k = to_double(p.k);

  VoteResult res;
  res.written.assign(g.size(), 0u);
  res.uncertain.assign(std::size_t(g.B * g.H * g.nq * g.nk), 0);
  res.visited.assign(std::size_t(g.B * g.H * g.nq * g.nk), 0);
  for (i64 b = 0; b < p.B; ++b)
    for (i64 h = 0; h < p.H; ++h)
      for (i64 i = 0; i < g.nq; ++i) {
        const i64 row = g.row(b, h, i);
        const i64 r0 = i * bm, rows = std::min<i64>(bm, p.Lq - r0);
        std::vector<double> running(std::size_t(rows), -kInf);
        for (i64 j : visit_order(call.order, i, p.Lq, p.Lk, call.tile)) {
          const bool read = (call.read_mask[std::size_t(row * g.words + j / 32)] >> (j % 32)) & 1u;
          const bool visits = !must_skip[j] && (dense_q[i] || read || must_do[j]);
          if (!visits) continue;
          res.visited[std::size_t(row * g.nk + j)] = 1;
          bool any_keep = false, certain_keep = false, all_certain_skip = true;
          const i64 c0 = j * bn, cols = std::min<i64>(bn, p.Lk - c0);
          for (i64 r = 0; r < rows; ++r) {
            double m_loc = -kInf;
            bool nan = false;
            for (i64 col = 0; col < cols; ++col) {
              const double s = dot(q, k, p, b, r0 + r, h, c0 + col);
              nan |= std::isnan(s);
              m_loc = std::max(m_loc, s);
            }
            if (nan) m_loc = std::numeric_limits<double>::quiet_NaN();
            double reference = running[r];
            if (call.previous) {
              const float stored = call.stored_row_max[std::size_t((b * p.H + h) * p.Lq + r0 + r)];
              if (!std::isnan(stored)) reference = stored;
            }
            const double diff = (m_loc - reference) * c;
            const bool keep = !(diff <= call.threshold);  // NaN keeps
            const double margin = std::isnan(diff) ? kInf : std::fabs(diff - call.threshold);
            any_keep |= keep;
            if (keep && margin >= tol) certain_keep = true;
            if (keep || margin < tol) all_certain_skip = false;
            running[r] = nan || std::isnan(running[r]) ? std::numeric_limits<double>::quiet_NaN()
                                                       : std::max(running[r], m_loc);
          }
          const bool forced = dense_q[i] || must_do[j];
          if (any_keep || forced) res.written[std::size_t(row * g.words + j / 32)] |= 1u << (j % 32);
          if (!forced && !certain_keep && !all_certain_skip) res.uncertain[std::size_t(row * g.nk + j)] = 1;
        }
      }
  return res;
}

TileKeep visited_tiles(const VoteResult& votes, const MaskGeometry& g) {
  return [visited = votes.visited, g](i64 b, i64 h, i64 i, i64 j) {
    return visited[std::size_t(g.row(b, h, i) * g.nk + j)] != 0;
  };
}

liteattn::StateKey make_state_key(i64 B, i64 H, i64 Lq, i64 Lk, TileShape tile, bool row_max, liteattn::Device device) {
  liteattn::StateKey k;
  k.batch = B;
  k.heads = H;
  k.len_q = Lq;
  k.len_k = Lk;
  k.head_dim = 16;
  k.dtype = DType::f32;
  k.device = device;
  k.tile = tile;
  k.with_row_max = row_max;
  return k;
}

std::vector<std::uint8_t> state_bytes(const liteattn::SkipState& state) {
  std::vector<std::uint8_t> out;
  if (!state.shaped()) return out;
  const auto& v = state.view();
  auto append = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  };
  append(v.mask, v.key.mask_bytes());
  append(v.row_visits, v.key.row_visits_bytes());
  append(v.kept, v.key.kept_bytes());
  if (v.row_max) append(v.row_max, v.key.row_max_bytes());
  return out;
}

i64 certain_mismatches(const std::vector<std::uint32_t>& actual, const VoteResult& expected, const MaskGeometry& g) {
  i64 n = 0;
  for (i64 row = 0; row < g.B * g.H * g.nq; ++row)
    for (i64 j = 0; j < g.words * 32; ++j) {
      const bool a = (actual[std::size_t(row * g.words + j / 32)] >> (j % 32)) & 1u;
      const bool e = (expected.written[std::size_t(row * g.words + j / 32)] >> (j % 32)) & 1u;
      if (a == e) continue;
      if (j < g.nk && expected.uncertain[std::size_t(row * g.nk + j)]) continue;
      ++n;
    }
  return n;
}

}  // namespace lt
