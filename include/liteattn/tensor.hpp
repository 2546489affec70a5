// A non-owning view of a strided tensor. The library never allocates tensors: callers own
// every buffer (NumPy, PyTorch, CuPy, or plain memory) and describe it with a TensorView.
#pragma once

#include <array>
#include <initializer_list>
#include <cstdint>
#include <string>

#include "liteattn/error.hpp"
#include "liteattn/types.hpp"

namespace liteattn {

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device{};
  int rank = 0;
  std::array<std::int64_t, 4> shape{};
  std::array<std::int64_t, 4> stride{};  // in elements, not bytes

  bool defined() const { return data != nullptr; }

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }

  // A contiguous view with the given shape (row-major), of rank 4 or less.
  static TensorView contiguous(void* data, DType dtype, Device device,
                               std::initializer_list<std::int64_t> shape) {
    if (shape.size() > 4) throw ArgumentError("shape", "expected at most 4 dimensions, got " + std::to_string(shape.size()));
    TensorView t;
    t.data = data;
    t.dtype = dtype;
    t.device = device;
    t.rank = static_cast<int>(shape.size());
    int i = 0;
    for (auto s : shape) t.shape[i++] = s;
    std::int64_t step = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
      t.stride[d] = step;
      step *= t.shape[d];
    }
    return t;
  }

  template <class T>
  T* ptr() const { return static_cast<T*>(data); }
};

}  // namespace liteattn
