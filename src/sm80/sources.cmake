# The portable kernel's translation units: the dispatcher and one file per head dim (bf16 and
# fp16 each). Compiled for sm_80 (runs on every 8.x GPU) plus compute_80 PTX, which the driver
# compiles for newer GPUs (Hopper's fallback, Blackwell) on first use.
set(LITEATTN_SM80_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/launch.cu
  ${CMAKE_CURRENT_LIST_DIR}/fwd_hd64.cu
  ${CMAKE_CURRENT_LIST_DIR}/fwd_hd128.cu
)
