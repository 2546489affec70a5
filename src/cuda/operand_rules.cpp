// The tensor rules shared by the CUDA kernels' argument checks.
#include "cuda/operand_rules.hpp"

#include <cstdint>

#include "liteattn/error.hpp"

namespace liteattn::cuda {

std::string chunk_load_violation(const TensorView& t, const std::string& kernel) {
  const auto element = static_cast<std::int64_t>(dtype_size(t.dtype));
  if (reinterpret_cast<std::uintptr_t>(t.data) % 16 != 0)
    return "the " + kernel + " needs a 16-byte aligned base address";
  for (int d = 0; d < 3; ++d) {
    if (t.shape[d] == 1) continue;
    if ((t.stride[d] * element) % 16 != 0)
      return "the " + kernel + " needs strides that are multiples of 16 bytes; dimension " + std::to_string(d) +
             " has stride " + std::to_string(t.stride[d]) + " elements";
  }
  return {};
}

void check_32_bit_indexing(const AttentionArgs& args, TileShape tile, const std::string& kernel) {
  // Positions run to the end of the last tile (padding included), so the lengths rounded up to
  // whole tiles must stay below 2^31 too.
  constexpr std::int64_t kLimit = std::int64_t(1) << 31;
  const std::int64_t q_tiles = ceil_div(args.q.shape[1], tile.m), k_tiles = ceil_div(args.k.shape[1], tile.n);
  if (q_tiles * tile.m >= kLimit || k_tiles * tile.n >= kLimit || args.q.shape[0] * args.q.shape[2] * q_tiles >= kLimit)
    throw UnsupportedError("the " + kernel + " indexes sequences and work tiles with 32-bit integers: Lq and Lk "
                           "rounded up to whole tiles, and B * H * query tiles, must stay below 2^31");
}

void check_pair_stores(const TensorView& out, const std::string& kernel) {
  bool even_strides = true;
  for (int d = 0; d < 3; ++d) even_strides &= out.shape[d] == 1 || out.stride[d] % 2 == 0;  // size 1: unused
  if (reinterpret_cast<std::uintptr_t>(out.data) % 4 != 0 || !even_strides)
    throw ArgumentError("out", "the " + kernel + " needs a 4-byte aligned base address and even strides");
}

}  // namespace liteattn::cuda
