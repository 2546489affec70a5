// What the CUDA kernels' memory accesses require of the tensors, shared by their argument
// checks (check_sm90_args, check_sm80_args). Host only.
#pragma once

#include <string>

#include "liteattn/attention.hpp"

namespace liteattn::cuda {

// Both kernels read q, k and v in 16-byte chunks (the TMA, cp.async): the base address must be
// 16-byte aligned and the strides multiples of 16 bytes. The first rule t breaks, or an empty
// string. Size-1 dimensions are not checked: their stride is never used.
std::string chunk_load_violation(const TensorView& t, const std::string& kernel);

// Both kernels index sequences and work tiles with 32-bit integers.
void check_32_bit_indexing(const AttentionArgs& args, TileShape tile, const std::string& kernel);

// out written from registers two elements (4 bytes) at a time (size-1 dimensions exempt).
void check_pair_stores(const TensorView& out, const std::string& kernel);

}  // namespace liteattn::cuda
