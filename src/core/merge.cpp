#include "liteattn/merge.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "core/element_io.hpp"
#include "core/tensor_rules.hpp"
#include "liteattn/error.hpp"

namespace liteattn {

void merge_attention(const std::vector<TensorView>& outs, const std::vector<TensorView>& lses, const TensorView& out,
                     const TensorView& lse) {
  if (outs.empty()) throw ArgumentError("outs", "expected at least one partial result");
  if (outs.size() != lses.size())
    throw ArgumentError("lses", "expected one lse per partial output (" + std::to_string(outs.size()) + "), got " +
                                    std::to_string(lses.size()));
  check_tensor(out, "out", "(B, L, H, D)");
  check_writable_layout(out, "out");
  const auto& shape = out.shape;
  const std::int64_t B = shape[0], L = shape[1], H = shape[2], D = shape[3];
  auto check_lse = [&](const TensorView& t, const std::string& name) {
    if (!t.defined() || t.dtype != DType::f32 || t.rank != 3 || t.shape[0] != B || t.shape[1] != H ||
        t.shape[2] != L || t.stride[2] != 1 || t.stride[1] != L || t.stride[0] != H * L)
      throw ArgumentError(name, "expected a contiguous float32 tensor of shape (B, H, L) = (" + std::to_string(B) + ", " +
                                    std::to_string(H) + ", " + std::to_string(L) + ")");
    if (t.device.kind != DeviceKind::cpu)
      throw ArgumentError(name, "expected a CPU tensor (merge on the GPU through the Python package)");
  };
  for (std::size_t j = 0; j < outs.size(); ++j) {
    const std::string name = "outs[" + std::to_string(j) + "]";
    check_tensor(outs[j], name.c_str(), "(B, L, H, D)");
    if (outs[j].shape != shape) throw ArgumentError(name, "expected the shape of out " + shape_string(out));
    if (outs[j].device.kind != DeviceKind::cpu)
      throw ArgumentError(name, "expected a CPU tensor (merge on the GPU through the Python package)");
    check_lse(lses[j], "lses[" + std::to_string(j) + "]");
  }
  if (out.device.kind != DeviceKind::cpu) throw ArgumentError("out", "expected a CPU tensor");
  if (lse.defined()) check_lse(lse, "lse");

  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t l = 0; l < L; ++l) {
        const std::int64_t li = (b * H + h) * L + l;
        float m = kNegInf;
        for (const auto& part : lses) m = std::max(m, part.ptr<const float>()[li]);
        float sum = 0.0f;
        if (m != kNegInf)
          for (const auto& part : lses) sum += std::exp(part.ptr<const float>()[li] - m);
        const float merged = m == kNegInf ? kNegInf : m + std::log(sum);
        for (std::int64_t d = 0; d < D; ++d) {
          float acc = 0.0f;
          if (merged != kNegInf)
            for (std::size_t j = 0; j < outs.size(); ++j) {
              const float w = lses[j].ptr<const float>()[li];
              if (w != kNegInf) acc += std::exp(w - merged) * load_element(outs[j], offset_blh(outs[j], b, l, h) + d);
            }
          store_element(out, offset_blh(out, b, l, h) + d, acc);
        }
        if (lse.defined()) lse.ptr<float>()[li] = merged;
      }
}

}  // namespace liteattn
