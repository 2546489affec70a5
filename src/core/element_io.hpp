// Reading and writing one element of a host tensor as fp32, whatever its storage type.
#pragma once

#include <cstdint>

#include "liteattn/numeric.hpp"
#include "liteattn/tensor.hpp"

namespace liteattn {

inline float load_element(const TensorView& t, std::int64_t offset) {
  switch (t.dtype) {
    case DType::f32: return t.ptr<const float>()[offset];
    case DType::bf16: return bf16_to_float(t.ptr<const std::uint16_t>()[offset]);
    case DType::f16: return f16_to_float(t.ptr<const std::uint16_t>()[offset]);
  }
  return 0.0f;
}

inline void store_element(const TensorView& t, std::int64_t offset, float value) {
  switch (t.dtype) {
    case DType::f32: t.ptr<float>()[offset] = value; return;
    case DType::bf16: t.ptr<std::uint16_t>()[offset] = float_to_bf16(value); return;
    case DType::f16: t.ptr<std::uint16_t>()[offset] = float_to_f16(value); return;
  }
}

// Offset of element (b, l, h, 0) of a (B, L, H, D) view.
inline std::int64_t offset_blh(const TensorView& t, std::int64_t b, std::int64_t l, std::int64_t h) {
  return b * t.stride[0] + l * t.stride[1] + h * t.stride[2];
}

}  // namespace liteattn
