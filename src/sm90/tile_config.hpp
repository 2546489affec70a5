// Tile shapes of the Hopper kernel, per head dim. Part of a skip mask's identity: the CPU
// reference uses the same shapes so that it reproduces the kernel's decisions. No CUDA here,
// so host-only builds know the shapes too.
#pragma once

#include <cstdint>

#include "liteattn/types.hpp"

namespace liteattn::sm90 {

constexpr TileShape tile_shape_for_head_dim(std::int64_t head_dim) {
  return head_dim <= 64 ? TileShape{128, 128} : TileShape{128, 128};
}

constexpr bool supports_head_dim(std::int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

}  // namespace liteattn::sm90
