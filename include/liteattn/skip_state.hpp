// The skip state (method.md section 4): per (batch, head, query tile) a bitmask over key tiles,
// double-buffered, owned by the caller, one per (attention layer, CFG branch, KV shard).
//
// Layout. rows = B * H * nq, words = ceil(nk / 32). `mask` holds two buffers of rows * words
// uint32 each; buffer p of row r starts at mask + (p * rows + r) * words. Bit j of a row set
// means key tile j is computed. Each row keeps its own call counter `row_visits[r]`: a call
// reads buffer (visits & 1), writes buffer 1 - (visits & 1) and increments the counter. The
// swap therefore lives in device memory next to the mask, so a call captured in a CUDA graph
// swaps correctly on every replay, and no row depends on another row's progress.
// `kept` holds the B * H counts of key tiles the last call computed, then one word that a GPU
// kernel hands out its work tiles with (a per-call counter; set with the counts at the start of
// every call, so concurrent calls on different states never share it), then one word per row
// where a skipping call on the Hopper kernel puts the order of its work tiles (scratch: written
// before and read during that call only).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "liteattn/types.hpp"

namespace liteattn {

// Everything a mask's meaning depends on. A state made for one key is invalid for another;
// changing any field resets the state.
struct StateKey {
  std::int64_t batch = 0;
  std::int64_t heads = 0;
  std::int64_t len_q = 0;
  std::int64_t len_k = 0;
  std::int64_t head_dim = 0;
  DType dtype = DType::bf16;
  Device device{};
  TileShape tile{};
  bool with_row_max = false;  // the `previous` criterion stores each row's final max

  std::int64_t q_tiles() const { return ceil_div(len_q, tile.m); }
  std::int64_t k_tiles() const { return ceil_div(len_k, tile.n); }
  std::int64_t words_per_row() const { return ceil_div(k_tiles(), 32); }
  std::int64_t rows() const { return batch * heads * q_tiles(); }

  std::size_t mask_bytes() const { return 2 * std::size_t(rows() * words_per_row()) * 4; }
  std::size_t row_visits_bytes() const { return std::size_t(rows()) * 4; }
  std::size_t row_max_bytes() const { return with_row_max ? std::size_t(batch * heads * len_q) * 4 : 0; }
  // kept: the counts, the work-tile counter, then the work order (one word per row).
  std::int64_t work_counter_offset() const { return batch * heads; }
  std::int64_t work_order_offset() const { return work_counter_offset() + 1; }
  std::int64_t kept_words() const { return work_order_offset() + rows(); }
  std::size_t kept_bytes() const { return std::size_t(kept_words()) * 4; }
  std::size_t total_bytes() const { return mask_bytes() + row_visits_bytes() + row_max_bytes() + kept_bytes(); }

  // Throws ArgumentError naming `argument` unless every field is in range (dimensions and tiles
  // >= 1, at most 2^31 - 1 tiles each way, a known dtype and device) and the buffers' total size
  // is at most 2^48 bytes, so that the sizes above are exact.
  void check(const char* argument) const;

  std::string describe() const;
  friend bool operator==(const StateKey&, const StateKey&) = default;
};

// Non-owning pointers to a state's buffers, on the state's device. This is what backends see.
struct SkipStateView {
  StateKey key{};
  std::uint32_t* mask = nullptr;        // 2 * rows * words
  std::uint32_t* row_visits = nullptr;  // rows
  float* row_max = nullptr;             // B * H * Lq raw (unscaled) row maxima; NaN = none yet
  std::uint32_t* kept = nullptr;        // B * H key tiles computed by the last call, the work-tile counter, the work order
  // Optional (null: none), not part of the state key's memory: B * H running totals to which
  // every call that updates the state adds its kept counts, for statistics over a trajectory
  // (the caller zeroes it; reset_state leaves it alone).
  std::int64_t* cumulative = nullptr;

  bool defined() const { return mask != nullptr; }
};

// Counts taken from a state (method.md section 4, statistics).
struct SkipStats {
  std::int64_t tiles_per_head = 0;               // B * nq * nk
  std::vector<std::int64_t> computed_per_head;   // tiles the last call computed, per head
  std::vector<std::int64_t> planned_per_head;    // tiles the next call will compute, per head
  std::int64_t calls = 0;                        // calls that updated the state since reset

  std::int64_t total_tiles() const { return tiles_per_head * std::int64_t(computed_per_head.size()); }
  std::int64_t computed() const;
  std::int64_t planned() const;
  double last_sparsity() const;   // fraction of tiles the last call skipped
  double next_sparsity() const;   // fraction the next call will skip
  std::vector<double> last_head_sparsity() const;
};

// Memory for a state on some device. The default serves the CPU (new/delete) and CUDA
// (cudaMalloc/cudaFree). Allocation happens only when the state's key changes.
struct StateAllocator {
  std::function<void*(std::size_t bytes, Device device)> allocate;
  std::function<void(void* ptr, Device device)> release;
  static StateAllocator standard();
};

// An owning skip state. `prepare` shapes it for a call and resets it when the key changed or a
// reset was requested; the attention entry point calls it for you.
class SkipState {
 public:
  explicit SkipState(StateAllocator allocator = StateAllocator::standard());
  ~SkipState();
  SkipState(const SkipState&) = delete;
  SkipState& operator=(const SkipState&) = delete;
  SkipState(SkipState&&) noexcept;
  SkipState& operator=(SkipState&&) noexcept;

  // Returns true when the state was (re)initialised. `stream` is a cudaStream_t for CUDA states.
  bool prepare(const StateKey& key, void* stream = nullptr);
  void request_reset() { reset_requested_ = true; }

  bool shaped() const { return storage_ != nullptr; }
  const StateKey& key() const { return view_.key; }
  const SkipStateView& view() const { return view_; }

  // Copies the current masks to the host: rows * words words, row-major over (b, h, i). These
  // inspection reads (and the ones below) of a CUDA state wait for all of its GPU's work first,
  // whatever stream the calls ran on; not for the hot path or inside a CUDA graph capture.
  std::vector<std::uint32_t> read_mask() const;   // what the next call reads
  std::vector<std::uint32_t> last_read_mask() const;  // what the last call read
  std::vector<std::uint32_t> row_visits() const;
  std::vector<float> row_max() const;
  SkipStats stats() const;

 private:
  void release();
  StateAllocator allocator_;
  void* storage_ = nullptr;
  SkipStateView view_{};
  bool reset_requested_ = false;
};

// Writes the initial state into `view`: mask buffers all ones for tiles < nk (bits past nk
// zero), visit counters 0, row maxima NaN, kept counts 0. Dispatches to the state's device.
void reset_state(const SkipStateView& view, void* stream = nullptr);

// Host-side helpers that every backend and test use to interpret a mask.
inline bool mask_bit(const std::uint32_t* row, std::int64_t tile) {
  return (row[tile >> 5] >> (tile & 31)) & 1u;
}

}  // namespace liteattn
