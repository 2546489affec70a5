#include "liteattn/skip_state.hpp"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "core/backends.hpp"
#include "core/tensor_rules.hpp"
#include "liteattn/error.hpp"

namespace liteattn {

std::string StateKey::describe() const {
  return "B=" + std::to_string(batch) + " H=" + std::to_string(heads) + " Lq=" + std::to_string(len_q) +
         " Lk=" + std::to_string(len_k) + " D=" + std::to_string(head_dim) + " " + std::string(to_string(dtype)) +
         " on " + to_string(device) + " tiles " + std::to_string(tile.m) + "x" + std::to_string(tile.n) +
         (with_row_max ? " with row max" : "");
}

void StateKey::check(const char* argument) const {
  constexpr std::int64_t kMax = std::numeric_limits<std::int32_t>::max();
  for (const std::int64_t n : {batch, heads, len_q, len_k, head_dim})
    if (n < 1 || n > kMax) throw ArgumentError(argument, "expected B, H, Lq, Lk and D in [1, 2^31 - 1], got " + describe());
  if (tile.m < 1 || tile.n < 1) throw ArgumentError(argument, "expected tiles of at least 1 x 1, got " + describe());
  if (!known_dtype(dtype)) throw ArgumentError(argument, "expected dtype float32, bfloat16 or float16");
  if (!known_device(device)) throw ArgumentError(argument, "expected a CPU or CUDA device with index >= 0");
  // In double: the products of fields up to 2^31 can pass int64 before the bound is checked.
  const double pairs = double(batch) * double(heads), rows = pairs * double(q_tiles());
  const double words = 2 * rows * double(words_per_row()) + rows + (with_row_max ? pairs * double(len_q) : 0) +
                       pairs + 1 + rows;
  if (words * 4 > 0x1p48)
    throw ArgumentError(argument, "the skip state for " + describe() + " would need " + std::to_string(words * 4) +
                                      " bytes (at most 2^48)");
}

std::int64_t SkipStats::computed() const {
  std::int64_t n = 0;
  for (auto c : computed_per_head) n += c;
  return n;
}

std::int64_t SkipStats::planned() const {
  std::int64_t n = 0;
  for (auto c : planned_per_head) n += c;
  return n;
}

double SkipStats::last_sparsity() const {
  return total_tiles() ? 1.0 - double(computed()) / double(total_tiles()) : 0.0;
}

double SkipStats::next_sparsity() const {
  return total_tiles() ? 1.0 - double(planned()) / double(total_tiles()) : 0.0;
}

std::vector<double> SkipStats::last_head_sparsity() const {
  std::vector<double> s;
  for (auto c : computed_per_head) s.push_back(tiles_per_head ? 1.0 - double(c) / double(tiles_per_head) : 0.0);
  return s;
}

StateAllocator StateAllocator::standard() {
  StateAllocator a;
  a.allocate = [](std::size_t bytes, Device device) -> void* {
    if (device.kind == DeviceKind::cpu) return ::operator new(bytes, std::align_val_t{64});
#if defined(LITEATTN_WITH_CUDA)
    return cuda_allocate(bytes, device.index);
#else
    throw UnsupportedError("this build of liteattn has no CUDA support");
#endif
  };
  a.release = [](void* ptr, Device device) {
    if (device.kind == DeviceKind::cpu) return ::operator delete(ptr, std::align_val_t{64});
#if defined(LITEATTN_WITH_CUDA)
    cuda_release(ptr, device.index);
#endif
  };
  return a;
}

SkipState::SkipState(StateAllocator allocator) : allocator_(std::move(allocator)) {}
SkipState::~SkipState() { release(); }

SkipState::SkipState(SkipState&& other) noexcept
    : allocator_(std::move(other.allocator_)), storage_(std::exchange(other.storage_, nullptr)),
      view_(std::exchange(other.view_, {})), reset_requested_(other.reset_requested_) {}

SkipState& SkipState::operator=(SkipState&& other) noexcept {
  if (this != &other) {
    release();
    allocator_ = std::move(other.allocator_);
    storage_ = std::exchange(other.storage_, nullptr);
    view_ = std::exchange(other.view_, {});
    reset_requested_ = other.reset_requested_;
  }
  return *this;
}

void SkipState::release() {
  if (storage_) allocator_.release(storage_, view_.key.device);
  storage_ = nullptr;
  view_ = {};
}

bool SkipState::prepare(const StateKey& key, void* stream) {
  if (storage_ && key == view_.key && !reset_requested_) return false;
  if (!storage_ || !(key == view_.key)) {
    key.check("state");
    // The new buffers first: if that allocation fails, the state keeps its old ones.
    void* fresh = allocator_.allocate(key.total_bytes(), key.device);
    release();
    storage_ = fresh;
    auto* bytes = static_cast<std::uint8_t*>(storage_);
    view_.key = key;
    view_.mask = reinterpret_cast<std::uint32_t*>(bytes);
    bytes += key.mask_bytes();
    view_.row_visits = reinterpret_cast<std::uint32_t*>(bytes);
    bytes += key.row_visits_bytes();
    view_.kept = reinterpret_cast<std::uint32_t*>(bytes);
    bytes += key.kept_bytes();
    view_.row_max = key.with_row_max ? reinterpret_cast<float*>(bytes) : nullptr;
  }
  reset_state(view_, stream);
  reset_requested_ = false;
  return true;
}

namespace {

// Copies `bytes` of a state buffer to host memory, whatever the state's device.
void copy_out(const SkipStateView& view, void* host, const void* src, std::size_t bytes) {
  if (view.key.device.kind == DeviceKind::cpu) {
    std::memcpy(host, src, bytes);
    return;
  }
#if defined(LITEATTN_WITH_CUDA)
  cuda_copy_to_host(host, src, bytes, view.key.device.index);
#endif
}

// One buffer of the double-buffered mask, gathered per row: `newest` picks the buffer the next
// call reads, otherwise the one the last call read.
std::vector<std::uint32_t> gather_mask(const SkipStateView& view, bool newest) {
  const auto rows = view.key.rows(), words = view.key.words_per_row();
  std::vector<std::uint32_t> both(std::size_t(2 * rows * words));
  std::vector<std::uint32_t> visits(static_cast<std::size_t>(rows));
  std::vector<std::uint32_t> out(std::size_t(rows * words));
  copy_out(view, both.data(), view.mask, view.key.mask_bytes());
  copy_out(view, visits.data(), view.row_visits, view.key.row_visits_bytes());
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::uint32_t read_buffer = visits[r] & 1u;
    const std::uint32_t buffer = newest ? read_buffer : 1u - read_buffer;
    std::memcpy(&out[r * words], &both[(buffer * rows + r) * words], std::size_t(words) * 4);
  }
  return out;
}

}  // namespace

std::vector<std::uint32_t> SkipState::read_mask() const {
  if (!storage_) return {};
  return gather_mask(view_, true);
}

std::vector<std::uint32_t> SkipState::last_read_mask() const {
  if (!storage_) return {};
  return gather_mask(view_, false);
}

std::vector<std::uint32_t> SkipState::row_visits() const {
  if (!storage_) return {};
  std::vector<std::uint32_t> out(static_cast<std::size_t>(view_.key.rows()));
  copy_out(view_, out.data(), view_.row_visits, view_.key.row_visits_bytes());
  return out;
}

std::vector<float> SkipState::row_max() const {
  if (!storage_ || !view_.row_max) return {};
  std::vector<float> out(view_.key.row_max_bytes() / 4);
  copy_out(view_, out.data(), view_.row_max, view_.key.row_max_bytes());
  return out;
}

SkipStats SkipState::stats() const {
  SkipStats s;
  if (!storage_) return s;
  const auto& k = view_.key;
  const auto nq = k.q_tiles(), words = k.words_per_row();
  s.tiles_per_head = k.batch * nq * k.k_tiles();
  // The counts only (the counter and the work order follow them in `kept`).
  std::vector<std::uint32_t> kept(static_cast<std::size_t>(k.batch * k.heads));
  copy_out(view_, kept.data(), view_.kept, kept.size() * 4);
  const auto visits = row_visits();
  const auto mask = read_mask();
  s.computed_per_head.assign(std::size_t(k.heads), 0);
  s.planned_per_head.assign(std::size_t(k.heads), 0);
  for (std::int64_t b = 0; b < k.batch; ++b)
    for (std::int64_t h = 0; h < k.heads; ++h) {
      s.computed_per_head[h] += kept[b * k.heads + h];
      for (std::int64_t i = 0; i < nq; ++i)
        for (std::int64_t w = 0; w < words; ++w)
          s.planned_per_head[h] += __builtin_popcount(mask[((b * k.heads + h) * nq + i) * words + w]);
    }
  s.calls = k.rows() ? visits[0] : 0;
  return s;
}

void reset_state(const SkipStateView& view, void* stream) {
  if (!view.defined()) throw ArgumentError("state", "expected a shaped skip state");
  if (view.key.device.kind == DeviceKind::cpu) return reset_state_cpu(view);
#if defined(LITEATTN_WITH_CUDA)
  reset_state_cuda(view, stream);
#else
  throw UnsupportedError("this build of liteattn has no CUDA support");
#endif
}

}  // namespace liteattn
