// An independent fp64 replay of one LiteAttention call, used by `liteattn verify`: dense
// attention over exactly the tiles the read mask keeps, and the vote of every visited tile with
// its decision margin (method.md section 8: bits whose margin is below 1e-3 may differ).
#pragma once

#include <cstdint>
#include <vector>

#include "core/plan.hpp"

namespace liteattn::cli {

struct Fp64Inputs {
  // Host copies after rounding to the call's dtype, contiguous (B, L, H, D) / (B, L, Hkv, D).
  const std::vector<float>* q;
  const std::vector<float>* k;
  const std::vector<float>* v;
  const std::vector<std::uint32_t>* read_mask;  // rows * words; null: dense
  const std::vector<std::uint32_t>* row_visits; // rows
  const std::vector<float>* stored_row_max;     // B*H*Lq or null
};

struct Fp64Result {
  std::vector<double> out;     // (B, Lq, H, D)
  std::vector<double> lse;     // (B, H, Lq)
  std::vector<std::uint32_t> written;  // rows * words
  std::vector<double> margin;  // rows * k_tiles: |max_r (m_loc - ref) * c - threshold|; +inf if not visited
};

Fp64Result fp64_replay(const CallPlan& plan, const Fp64Inputs& in);

}  // namespace liteattn::cli
