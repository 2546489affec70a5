// Small value types shared by every layer: element types, devices, the skip criterion and
// visit order, tile shapes and token ranges.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace liteattn {

enum class DType : std::uint8_t { f32, bf16, f16 };
enum class DeviceKind : std::uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;  // CUDA ordinal; 0 for the CPU
  friend bool operator==(const Device&, const Device&) = default;
};

// Which reference the skip test compares a tile's row max with (method.md section 3).
enum class Criterion : std::uint8_t {
  running,   // the running max before the tile (the paper's test)
  previous,  // the row's final max from the previous call on the same state
};

// In which order a query tile visits its key tiles (method.md section 4).
enum class VisitOrder : std::uint8_t {
  descending,      // last key tile first
  alternate,       // descending, then ascending on the next call of that row, and so on
  diagonal_first,  // the key tile aligned with the query tile first, then outward
};

// Rows (queries) and columns (keys) of one tile. Part of a skip mask's identity.
struct TileShape {
  int m = 128;
  int n = 128;
  friend bool operator==(const TileShape&, const TileShape&) = default;
};

// A half-open range of token positions [begin, end).
struct TokenRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;
  friend bool operator==(const TokenRange&, const TokenRange&) = default;
};

std::size_t dtype_size(DType dtype);
std::string_view to_string(DType dtype);
std::string_view to_string(DeviceKind kind);
std::string to_string(Device device);
std::string_view to_string(Criterion criterion);
std::string_view to_string(VisitOrder order);

// Parsers for the CLI and the binding; they throw ArgumentError naming `argument`.
DType parse_dtype(std::string_view text, std::string_view argument);
Criterion parse_criterion(std::string_view text, std::string_view argument);
VisitOrder parse_visit_order(std::string_view text, std::string_view argument);

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace liteattn
