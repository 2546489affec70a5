// Skip-state initialisation on CUDA devices (method.md section 4): both mask buffers all ones
// for key tiles < nk and zero past nk, visit counters 0, stored row maxima NaN, kept counts 0.
// One kernel on the caller's stream; no allocation, no sync.
#include <cstdint>

#include "core/backends.hpp"
#include "cuda/runtime.hpp"

namespace liteattn {
namespace {

__global__ void reset_state_kernel(std::uint32_t* mask, std::int64_t mask_words, std::int32_t words_per_row,
                                   std::int64_t k_tiles, std::uint32_t* row_visits, std::int64_t rows,
                                   float* row_max, std::int64_t row_max_count, std::uint32_t* kept,
                                   std::int64_t kept_count) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t start = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (std::int64_t i = start; i < mask_words; i += stride) {
    const std::int64_t first_tile = (i % words_per_row) * 32;
    const std::int64_t valid = k_tiles - first_tile;  // tiles of this word that exist
    mask[i] = valid >= 32 ? 0xffffffffu : (valid <= 0 ? 0u : ((1u << valid) - 1u));
  }
  for (std::int64_t i = start; i < rows; i += stride) row_visits[i] = 0u;
  if (row_max != nullptr)
    for (std::int64_t i = start; i < row_max_count; i += stride) row_max[i] = __int_as_float(0x7fc00000);
  for (std::int64_t i = start; i < kept_count; i += stride) kept[i] = 0u;
}

}  // namespace

void reset_state_cuda(const SkipStateView& view, void* stream) {
  const StateKey& key = view.key;
  const std::int64_t rows = key.rows();
  const std::int64_t words = key.words_per_row();
  const std::int64_t mask_words = 2 * rows * words;
  const std::int64_t row_max_count = key.with_row_max ? key.batch * key.heads * key.len_q : 0;
  const std::int64_t kept_count = key.kept_words();
  std::int64_t work = mask_words;
  if (rows > work) work = rows;
  if (row_max_count > work) work = row_max_count;
  if (work == 0) return;
  constexpr int kThreads = 256;
  const std::int64_t blocks_needed = (work + kThreads - 1) / kThreads;
  const int blocks = int(blocks_needed < 4096 ? blocks_needed : 4096);
  cuda::DeviceGuard guard(key.device.index);
  reset_state_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      view.mask, mask_words, std::int32_t(words), key.k_tiles(), view.row_visits, rows, view.row_max,
      row_max_count, view.kept, kept_count);
  LITEATTN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace liteattn
