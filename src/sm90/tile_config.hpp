// Tile shapes of the Hopper kernel, per head dim. Part of a skip mask's identity: the CPU
// reference uses the same shapes so that it reproduces the kernel's decisions. No CUDA here,
// so host-only builds know the shapes too.
#pragma once

#include <cstdint>

#include "liteattn/types.hpp"

namespace liteattn::sm90 {

// 128 query rows per tile: two consumer warpgroups of 64 rows each (one wgmma M=64 atom each).
// 128 key columns per tile: S (64 fp32 per thread), O (D/2 fp32) and the bf16 P operand fit the
// consumers' 240 registers without spills. 128x176 for D=128 (FlashAttention-3's choice) spilled
// here and ran at 441 TFLOP/s against 631 on an H100 (bench/NOTES.md).
// LITEATTN_SM90_HD128_BLOCK_N: build-time override for tuning experiments only (bench/NOTES.md);
// it changes the mask identity for every backend of that build alike.
#ifndef LITEATTN_SM90_HD128_BLOCK_N
#define LITEATTN_SM90_HD128_BLOCK_N 128
#endif
constexpr TileShape tile_shape_for_head_dim(std::int64_t head_dim) {
  return head_dim <= 64 ? TileShape{128, 128} : TileShape{128, LITEATTN_SM90_HD128_BLOCK_N};
}

// Shared-memory pipeline depth (K and V stages) per head dim: as deep as 227 KB allows.
constexpr int pipeline_stages_for_head_dim(std::int64_t head_dim) { return head_dim <= 64 ? 4 : 2; }

constexpr bool supports_head_dim(std::int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

// The largest mask row (uint32 words) the kernel handles: a query tile's votes and visit list
// live in shared memory (3 x 4 KB of lists at this size). 64 words = 2048 key tiles = 262144
// keys at Bn = 128. (128 words fit too and compile; kept at the size that ran on the GPU.)
constexpr int kMaxMaskWords = 64;

}  // namespace liteattn::sm90
