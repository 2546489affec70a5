#include "liteattn/types.hpp"

#include "liteattn/error.hpp"

namespace liteattn {

std::size_t dtype_size(DType dtype) { return dtype == DType::f32 ? 4 : 2; }

std::string_view to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "float32";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
  }
  return "?";
}

std::string_view to_string(DeviceKind kind) { return kind == DeviceKind::cpu ? "cpu" : "cuda"; }

std::string to_string(Device device) {
  return device.kind == DeviceKind::cpu ? "cpu" : "cuda:" + std::to_string(device.index);
}

std::string_view to_string(Criterion criterion) {
  return criterion == Criterion::running ? "running" : "previous";
}

std::string_view to_string(VisitOrder order) {
  switch (order) {
    case VisitOrder::descending: return "descending";
    case VisitOrder::alternate: return "alternate";
    case VisitOrder::diagonal_first: return "diagonal_first";
  }
  return "?";
}

DType parse_dtype(std::string_view text, std::string_view argument) {
  if (text == "float32" || text == "fp32" || text == "f32") return DType::f32;
  if (text == "bfloat16" || text == "bf16") return DType::bf16;
  if (text == "float16" || text == "fp16" || text == "f16" || text == "half") return DType::f16;
  throw ArgumentError(std::string(argument), "expected float32, bfloat16 or float16, got '" + std::string(text) + "'");
}

Criterion parse_criterion(std::string_view text, std::string_view argument) {
  if (text == "running") return Criterion::running;
  if (text == "previous") return Criterion::previous;
  throw ArgumentError(std::string(argument), "expected 'running' or 'previous', got '" + std::string(text) + "'");
}

VisitOrder parse_visit_order(std::string_view text, std::string_view argument) {
  if (text == "descending") return VisitOrder::descending;
  if (text == "alternate") return VisitOrder::alternate;
  if (text == "diagonal_first") return VisitOrder::diagonal_first;
  throw ArgumentError(std::string(argument),
                      "expected 'descending', 'alternate' or 'diagonal_first', got '" + std::string(text) + "'");
}

}  // namespace liteattn
