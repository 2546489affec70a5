// Test helpers, written independently of the library's backends: host tensors in f32/bf16/f16
// (rounded through include/liteattn/numeric.hpp), a dense fp64 attention with an optional
// per-(b, h, query tile) key-tile mask, an fp64 recomputation of method.md's skip vote, and
// error norms. Nothing here uses src/ (plan, policy or the CPU reference), so the tests compare
// the library against a second, plain formulation of the contract.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "liteattn/liteattn.hpp"

namespace lt {

using liteattn::DType;
using liteattn::TileShape;
using i64 = std::int64_t;

// A 4-d host tensor of logical shape (d0, d1, d2, d3) with a unit last stride. `pad` adds unused
// elements after every d3 row (so the tensor is strided, not contiguous). Values are stored in
// the tensor's dtype; get() returns the stored (rounded) value.
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, std::array<i64, 4> shape, i64 pad = 0);

  DType dtype() const { return dtype_; }
  const std::array<i64, 4>& shape() const { return shape_; }
  liteattn::TensorView view() const;

  float get(i64 a, i64 b, i64 c, i64 d) const;
  void set(i64 a, i64 b, i64 c, i64 d, float value);  // rounds to the dtype
  void fill(float value);
  void fill_normal(std::mt19937_64& rng, float stddev = 1.0f);

  // The raw storage, to check that a rejected call leaves it untouched.
  const std::vector<std::uint8_t>& bytes() const { return storage_; }

 private:
  i64 offset(i64 a, i64 b, i64 c, i64 d) const { return a * stride_[0] + b * stride_[1] + c * stride_[2] + d; }
  DType dtype_ = DType::f32;
  std::array<i64, 4> shape_{};
  std::array<i64, 4> stride_{};
  mutable std::vector<std::uint8_t> storage_;
};

// fp32 (B, H, L) log-sum-exp buffer.
struct LseTensor {
  i64 B = 0, H = 0, L = 0;
  std::vector<float> data;
  LseTensor() = default;
  LseTensor(i64 b, i64 h, i64 l, float fill = 12345.0f) : B(b), H(h), L(l), data(std::size_t(b * h * l), fill) {}
  liteattn::TensorView view() const;
  float at(i64 b, i64 h, i64 l) const { return data[std::size_t((b * H + h) * L + l)]; }
};

// A problem: q (B, Lq, H, D), k/v (B, Lk, Hkv, D), out like q, lse (B, H, Lq).
struct Problem {
  i64 B = 1, Lq = 1, Lk = 1, H = 1, Hkv = 1, D = 16;
  DType dtype = DType::f32;
  i64 pad = 0;  // padding per row of q/k/v/out (strided views)
  HostTensor q, k, v, out;
  LseTensor lse;

  Problem() = default;
  Problem(i64 B, i64 Lq, i64 Lk, i64 H, i64 Hkv, i64 D, DType dtype = DType::f32, i64 pad = 0);
  void randomize(std::uint64_t seed, float q_std = 1.0f, float k_std = 1.0f);
  // Overwrites dims 0 and 1 of q and k so that the scaled logit gains -a_h (x - y)^2 + a_h x^2,
  // x = a query's position mapped onto key positions, y = a key's position (both centred),
  // a_h = a / (h_kv + 1) for the key/value head h_kv of query head h: attention that decays with distance, as in video DiTs,
  // so that thresholds skip far tiles. Needs D >= 2 and the default scale.
  void add_locality(double a);
  // Arguments for a call on this problem (out and lse attached), skipping disabled.
  liteattn::AttentionArgs args(bool with_lse = true) const;
};

// Dense attention in fp64 over the stored (rounded) inputs. keep(b, h, i, j) = whether query
// tile i (rows of `tile.m`) attends key tile j (columns of `tile.n`); empty = every tile.
// Rows that attend nothing get out 0 and lse -inf.
struct Reference {
  i64 B = 0, Lq = 0, H = 0, D = 0;
  std::vector<double> out;  // (B, Lq, H, D) contiguous
  std::vector<double> lse;  // (B, H, Lq)
  double out_at(i64 b, i64 l, i64 h, i64 d) const { return out[std::size_t(((b * Lq + l) * H + h) * D + d)]; }
  double lse_at(i64 b, i64 h, i64 l) const { return lse[std::size_t((b * H + h) * Lq + l)]; }
};
using TileKeep = std::function<bool(i64 b, i64 h, i64 i, i64 j)>;
Reference reference_attention(const Problem& p, double scale, TileShape tile, const TileKeep& keep = {});
inline double default_scale(i64 D) { return double(1.0f / std::sqrt(float(D))); }

// Relative L2 error of the library's out / lse against the reference (rows with lse -inf on
// both sides agree; a -inf on one side only counts as infinite error).
double rel_l2_out(const HostTensor& out, const Reference& ref);
double rel_l2_lse(const LseTensor& lse, const Reference& ref);
double rel_l2(const std::vector<double>& a, const std::vector<double>& b);

// Mask helpers: a mask is rows * words uint32, rows = B * H * nq (row-major over (b, h, i)).
struct MaskGeometry {
  i64 B = 0, H = 0, nq = 0, nk = 0, words = 0;
  MaskGeometry(i64 B, i64 H, i64 Lq, i64 Lk, TileShape tile);
  i64 row(i64 b, i64 h, i64 i) const { return (b * H + h) * nq + i; }
  std::size_t size() const { return std::size_t(B * H * nq * words); }
};
bool bit(const std::vector<std::uint32_t>& mask, const MaskGeometry& g, i64 b, i64 h, i64 i, i64 j);
i64 popcount(const std::vector<std::uint32_t>& mask);

// An independent statement of the visit order of one query tile (method.md section 4):
// descending = nk-1 .. 0; ascending = 0 .. nk-1; diagonal = tiles sorted by distance from the
// aligned tile j0, the later tile first on a tie. j0 = the key tile of position
// floor(centre * Lk / Lq), centre = first row + (valid rows / 2), clamped to nk - 1.
enum class Order { descending, ascending, diagonal };
std::vector<i64> visit_order(Order order, i64 query_tile, i64 Lq, i64 Lk, TileShape tile);

// Key tiles touched by must_do ranges, and key tiles whose valid tokens must_skip covers whole.
std::vector<bool> tiles_overlapping(const std::vector<liteattn::TokenRange>& ranges, i64 Lk, i64 bn);
std::vector<bool> tiles_covered(const std::vector<liteattn::TokenRange>& ranges, i64 Lk, i64 bn);

// The fp64 recomputation of one call's written mask (method.md sections 2-4).
struct VoteCall {
  TileShape tile{};
  double scale = 0.0;
  double threshold = -10.0;
  bool previous = false;                   // criterion
  Order order = Order::descending;         // this call's direction
  std::vector<std::uint32_t> read_mask;    // what the call reads
  std::vector<float> stored_row_max;       // previous criterion: (B, H, Lq); NaN = none
  std::vector<liteattn::TokenRange> must_do, must_skip, dense_queries;
};
struct VoteResult {
  std::vector<std::uint32_t> written;    // expected written mask
  std::vector<std::uint8_t> uncertain;   // per (row, tile): decision margin below the tolerance
  std::vector<std::uint8_t> visited;     // per (row, tile): the call computes the tile
};
VoteResult expected_votes(const Problem& p, const VoteCall& call, double margin_tolerance = 1e-3);
// Keep predicate of the tiles a call visits (for reference_attention under the same read mask).
TileKeep visited_tiles(const VoteResult& votes, const MaskGeometry& g);

// A state key for tests of the state alone (head dim and dtype do not size any buffer).
liteattn::StateKey make_state_key(i64 B, i64 H, i64 Lq, i64 Lk, TileShape tile, bool row_max = false,
                                  liteattn::Device device = {});

// Every byte of a (CPU) state's buffers: both masks, row counters, kept counts, row maxima.
std::vector<std::uint8_t> state_bytes(const liteattn::SkipState& state);

// Count of (row, tile) bits where `actual` differs from `expected` outside uncertain entries.
i64 certain_mismatches(const std::vector<std::uint32_t>& actual, const VoteResult& expected, const MaskGeometry& g);

}  // namespace lt
