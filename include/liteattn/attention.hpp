// The attention entry point: one argument struct and one validation routine for every backend.
#pragma once

#include <optional>
#include <vector>

#include "liteattn/skip_state.hpp"
#include "liteattn/tensor.hpp"
#include "liteattn/types.hpp"

namespace liteattn {

// cpu: the reference. sm90: the Hopper kernel (compute capability 9.0). sm80: the portable
// kernel (compute capability 8.0 and newer; on Hopper a fallback chosen explicitly).
enum class Backend : std::uint8_t { cpu, sm90, sm80 };

std::string_view to_string(Backend backend);

struct SkipOptions {
  // With skipping disabled the call is plain dense attention and leaves the state untouched
  // (warm-up steps); no state is needed.
  bool enabled = true;
  // log2 units, <= 0: a tile is skipped when every row's max in it is below 2^threshold times
  // the reference max. -inf keeps everything (but still runs the bookkeeping).
  float threshold = -10.0f;
  Criterion criterion = Criterion::running;
  // alternate: 1.37-1.47x the sparsity of descending at equal error (docs/evaluation.md).
  VisitOrder order = VisitOrder::alternate;
};

struct AttentionArgs {
  TensorView q;    // (B, Lq, H, D)
  TensorView k;    // (B, Lk, Hkv, D)
  TensorView v;    // (B, Lk, Hkv, D)
  TensorView out;  // (B, Lq, H, D), same dtype as q
  TensorView lse;  // optional: fp32 (B, H, Lq), natural log

  std::optional<float> scale;  // default 1/sqrt(D)
  SkipOptions skip;

  // Key token ranges, ascending and disjoint, half-open. must_do: key tiles overlapping them are
  // always computed. must_skip: key tiles they cover completely are never computed.
  std::vector<TokenRange> must_do;
  std::vector<TokenRange> must_skip;
  // Query token ranges whose query tiles run dense (visit every tile, keep every tile).
  std::vector<TokenRange> dense_queries;

  SkipStateView state;  // required when skip.enabled

  void* stream = nullptr;  // cudaStream_t for CUDA tensors; nullptr = the legacy default stream

  // The backend to run; unset = by the tensors' device: the CPU reference for CPU tensors, the
  // Hopper kernel on compute capability 9.0 (the portable kernel where a shape exceeds its limits,
  // e.g. more than 2048 key tiles), the portable kernel on other GPUs of 8.0 and newer.
  // A backend that cannot serve the tensors' device is an ArgumentError naming `backend`.
  std::optional<Backend> backend;

  // CPU reference only: the tile shape to reproduce another backend's decisions.
  // Unset = the tile shape of the kernel that would serve this head dim on a GPU.
  std::optional<TileShape> cpu_tile;
  // CPU reference only: worker threads (0 = hardware concurrency; at most 1024).
  int cpu_threads = 0;
};

// The backend that serves these arguments: args.backend when set (checked against the tensors'
// device), else by the device and its capability.
Backend select_backend(const AttentionArgs& args);

// The tile shape a backend uses for a head dim and dtype. Every backend uses the Hopper kernel's
// shapes, so a skip state made by one is valid for the others.
TileShape tile_shape(Backend backend, std::int64_t head_dim, DType dtype);

// The state key a call with these arguments needs.
StateKey state_key(const AttentionArgs& args);

// Checks every rule of the contract; throws ArgumentError naming the argument. Checks the state
// only when skipping is enabled.
void validate(const AttentionArgs& args);

// Validates, then runs the selected backend. The state in args.state must match state_key(args).
void attention(const AttentionArgs& args);

// Convenience: shapes and resets `state` as needed (a new key resets it), then runs.
void attention(AttentionArgs args, SkipState& state);

// Which backends this build and this machine can run: the CPU reference and each GPU kernel that
// serves at least one visible GPU.
bool cuda_available();
std::vector<Backend> available_backends();
// Which backends can run on `device`: the CPU reference for the CPU, the kernels that serve a
// GPU's compute capability for a GPU (ArgumentError("device") for an index that is not a visible
// GPU, or any GPU in a build without CUDA).
std::vector<Backend> available_backends(const Device& device);

}  // namespace liteattn
