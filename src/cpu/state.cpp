// Initial skip state on the host: every key tile computed (bits past nk zero), no visits,
// no stored row maxima (NaN), no kept counts.
#include <algorithm>
#include <limits>

#include "core/backends.hpp"

namespace liteattn {

void reset_state_cpu(const SkipStateView& view) {
  const StateKey& key = view.key;
  const std::int64_t words = key.words_per_row(), k_tiles = key.k_tiles();
  for (std::int64_t row = 0; row < 2 * key.rows(); ++row) {
    std::uint32_t* mask = view.mask + row * words;
    for (std::int64_t w = 0; w < words; ++w) {
      const std::int64_t bits = std::min<std::int64_t>(32, k_tiles - 32 * w);
      mask[w] = bits == 32 ? ~0u : ((1u << bits) - 1u);
    }
  }
  std::fill(view.row_visits, view.row_visits + key.rows(), 0u);
  std::fill(view.kept, view.kept + key.kept_words(), 0u);
  if (view.row_max) std::fill(view.row_max, view.row_max + key.batch * key.heads * key.len_q, std::numeric_limits<float>::quiet_NaN());
}

}  // namespace liteattn
