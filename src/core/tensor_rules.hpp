// The rules every tensor argument of the library follows (attention and merge alike): what a
// TensorView must be before any code reads through it. Each check throws ArgumentError naming
// the argument.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "liteattn/tensor.hpp"

namespace liteattn {

// Dimensions above this would overflow the 32-bit tile indices of the skip policy and the kernels.
constexpr std::int64_t kMaxDimension = std::numeric_limits<std::int32_t>::max();

bool known_dtype(DType dtype);
bool known_device(const Device& device);  // CPU, or CUDA with an index >= 0

std::string shape_string(const TensorView& t);

// Defined, a known dtype and device, rank 4 (`layout` names the dimensions, e.g. "(B, Lq, H, D)"),
// every dimension in [1, kMaxDimension], non-negative strides, a unit last stride, and an
// extent that byte addresses can represent.
void check_tensor(const TensorView& t, const char* name, const char* layout);

// Every element at its own address (no stride 0 over a dimension above 1, no interleaving): the
// rule for tensors the library writes.
void check_writable_layout(const TensorView& t, const char* name);

// Whether the bytes the two views address overlap (both checked by check_tensor or contiguous).
bool overlaps(const TensorView& a, const TensorView& b);

}  // namespace liteattn
