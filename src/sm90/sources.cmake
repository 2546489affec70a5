# The Hopper kernel's translation units: one explicit instantiation per (head dim, dtype), plus
# the dispatcher and the work-order kernel (no CUTLASS in them).
set(LITEATTN_SM90_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/launch.cu
  ${CMAKE_CURRENT_LIST_DIR}/work_order.cu
  ${CMAKE_CURRENT_LIST_DIR}/fwd_bf16_hd64.cu
  ${CMAKE_CURRENT_LIST_DIR}/fwd_bf16_hd128.cu
  ${CMAKE_CURRENT_LIST_DIR}/fwd_fp16_hd64.cu
  ${CMAKE_CURRENT_LIST_DIR}/fwd_fp16_hd128.cu
)
