#include "core/tensor_rules.hpp"

#include <algorithm>
#include <array>

#include "liteattn/error.hpp"

namespace liteattn {
bool known_dtype(DType d) { return d == DType::f32 || d == DType::bf16 || d == DType::f16; }
bool known_device(const Device& d) {
  return (d.kind == DeviceKind::cpu || d.kind == DeviceKind::cuda) && d.index >= 0;
}

namespace {

// The offset in elements of a view's last element past its first, or -1 when it does not fit
// in 2^62 bytes.
std::int64_t last_offset(const TensorView& t) {
  constexpr std::int64_t kMaxBytes = std::int64_t(1) << 62;
  std::int64_t offset = 0;
  for (int d = 0; d < std::clamp(t.rank, 0, 4); ++d) {
    std::int64_t step = 0;
    if (__builtin_mul_overflow(t.stride[d], t.shape[d] - 1, &step) || __builtin_add_overflow(offset, step, &offset))
      return -1;
  }
  return offset <= kMaxBytes / std::int64_t(dtype_size(t.dtype)) ? offset : -1;
}

std::string values_string(const std::array<std::int64_t, 4>& values, int rank) {
  std::string s = "(";
  for (int i = 0; i < std::clamp(rank, 0, 4); ++i) s += (i ? ", " : "") + std::to_string(values[i]);
  return s + ")";
}

}  // namespace

std::string shape_string(const TensorView& t) { return values_string(t.shape, t.rank); }

void check_tensor(const TensorView& t, const char* name, const char* layout) {
  using Kind = ArgumentError::Kind;
  if (!t.defined()) throw ArgumentError(name, std::string("expected a tensor of shape ") + layout + ", got none", Kind::type);
  if (!known_dtype(t.dtype))
    throw ArgumentError(name, "expected dtype float32, bfloat16 or float16, got enumerator " +
                                  std::to_string(int(t.dtype)), Kind::type);
  if (!known_device(t.device)) throw ArgumentError(name, "expected a CPU or CUDA device with index >= 0");
  if (t.rank != 4) throw ArgumentError(name, std::string("expected rank 4 ") + layout + ", got rank " + std::to_string(t.rank));
  for (int d = 0; d < 4; ++d) {
    if (t.shape[d] < 1 || t.shape[d] > kMaxDimension)
      throw ArgumentError(name, std::string("expected every dimension in [1, 2^31 - 1] in ") + layout + ", got " +
                                    shape_string(t));
    if (t.stride[d] < 0) throw ArgumentError(name, "expected non-negative strides");
  }
  if (t.stride[3] != 1)
    throw ArgumentError(name, "expected a unit stride in the last (head_dim) dimension, got stride " +
                                  std::to_string(t.stride[3]));
  if (last_offset(t) < 0) throw ArgumentError(name, "expected strides that address at most 2^62 bytes");
}

void check_writable_layout(const TensorView& t, const char* name) {
  // Dimensions above 1 from the smallest stride up: each must step past everything inside it.
  std::array<int, 4> dims{};
  int n = 0;
  for (int d = 0; d < std::clamp(t.rank, 0, 4); ++d) {
    if (t.shape[d] == 1) continue;
    int i = n++;  // insertion by stride (at most four)
    for (; i > 0 && t.stride[dims[i - 1]] > t.stride[d]; --i) dims[i] = dims[i - 1];
    dims[i] = d;
  }
  std::int64_t inner = 1;  // elements spanned by the dimensions checked so far
  for (int i = 0; i < n; ++i) {
    const int d = dims[i];
    if (t.stride[d] < inner)
      throw ArgumentError(name, "expected every element at its own address, got strides " +
                                    values_string(t.stride, t.rank) + " for shape " + shape_string(t));
    if (__builtin_mul_overflow(t.stride[d], t.shape[d], &inner)) inner = std::numeric_limits<std::int64_t>::max();
  }
}

bool overlaps(const TensorView& a, const TensorView& b) {
  if (!a.defined() || !b.defined() || !(a.device == b.device)) return false;
  const auto begin_a = reinterpret_cast<std::uintptr_t>(a.data), begin_b = reinterpret_cast<std::uintptr_t>(b.data);
  const auto end_a = begin_a + std::uintptr_t(last_offset(a) + 1) * dtype_size(a.dtype);
  const auto end_b = begin_b + std::uintptr_t(last_offset(b) + 1) * dtype_size(b.dtype);
  return begin_a < end_b && begin_b < end_a;
}

}  // namespace liteattn
