// Tile shapes of the Hopper kernel, per head dim. Part of a skip mask's identity: the CPU
// reference uses the same shapes so that it reproduces the kernel's decisions. No CUDA here,
// so host-only builds know the shapes too.
#pragma once

#include <cstdint>

#include "liteattn/types.hpp"

namespace liteattn::sm90 {

// 128 query rows per tile: two consumer warpgroups of 64 rows each (one wgmma M=64 atom each).
// Key columns per tile: 128 for D = 64; 144 for D = 128, the widest tile whose S (72 fp32 per
// thread), O (64 fp32) and bf16 P operand fit the consumers' 240 registers without spills (160
// spills 16 bytes, 176 more). Fewer, wider tiles spread the per-tile costs (barriers, row-max
// shuffles, wgmma descriptors) over more flops: 144 ran 2 % faster than 128 at L = 32760 on an
// H200 (bench/NOTES.md, run 5).
// LITEATTN_SM90_HD128_BLOCK_N: build-time override for tuning experiments only (bench/NOTES.md);
// it changes the mask identity for every backend of that build alike.
#ifndef LITEATTN_SM90_HD128_BLOCK_N
#define LITEATTN_SM90_HD128_BLOCK_N 144
#endif
constexpr TileShape tile_shape_for_head_dim(std::int64_t head_dim) {
  return head_dim <= 64 ? TileShape{128, 128} : TileShape{128, LITEATTN_SM90_HD128_BLOCK_N};
}

// Shared-memory pipeline depth (K and V stages) per head dim: as deep as 227 KB allows.
constexpr int pipeline_stages_for_head_dim(std::int64_t head_dim) { return head_dim <= 64 ? 4 : 2; }

constexpr bool supports_head_dim(std::int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

// The largest mask row (uint32 words) the kernel handles: a query tile's votes and visit list
// live in shared memory (3 x 4 KB of lists at this size). 64 words = 2048 key tiles = 262144
// keys at Bn = 128, 294912 at Bn = 144. (128 words fit too and compile; kept at the size that
// ran on the GPU.)
constexpr int kMaxMaskWords = 64;

}  // namespace liteattn::sm90
