// Merging partial attention results over disjoint key sets by their log-sum-exp
// (method.md section 7): lse = logsumexp_j lse_j, O = sum_j exp(lse_j - lse) * O_j, in fp32.
// Parts with lse = -inf drop out; a row whose parts are all -inf gets out 0 and lse -inf.
#pragma once

#include <vector>

#include "liteattn/tensor.hpp"

namespace liteattn {

// outs[j]: (B, L, H, D) any supported dtype on the CPU; lses[j]: fp32 (B, H, L).
// out: (B, L, H, D); lse (optional): fp32 (B, H, L). CPU tensors only.
void merge_attention(const std::vector<TensorView>& outs, const std::vector<TensorView>& lses,
                     const TensorView& out, const TensorView& lse = {});

}  // namespace liteattn
