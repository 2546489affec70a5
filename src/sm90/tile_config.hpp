// Tile shapes of the Hopper kernel, per head dim. Part of a skip mask's identity: the CPU
// reference uses the same shapes so that it reproduces the kernel's decisions. No CUDA here,
// so host-only builds know the shapes too.
#pragma once

#include <cstdint>

#include "liteattn/types.hpp"

namespace liteattn::sm90 {

// 128 query rows per tile: two consumer warpgroups of 64 rows each (one wgmma M=64 atom each).
// 128 key columns per tile: the S accumulator (64 fp32 per thread), the O accumulator
// (D/2 fp32 per thread) and the bf16 P operand fit the consumers' 240 registers for D=128.
constexpr TileShape tile_shape_for_head_dim(std::int64_t head_dim) {
  return head_dim <= 64 ? TileShape{128, 128} : TileShape{128, 128};
}

// Shared-memory pipeline depth (K and V stages) per head dim: as deep as 227 KB allows.
constexpr int pipeline_stages_for_head_dim(std::int64_t head_dim) { return head_dim <= 64 ? 4 : 2; }

constexpr bool supports_head_dim(std::int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

// The largest mask row (uint32 words) the kernel keeps in shared memory while it collects the
// votes of one query tile: 256 words = 8192 key tiles = over a million keys at Bn = 128.
constexpr int kMaxMaskWords = 256;

}  // namespace liteattn::sm90
