# The Hopper kernel's translation units: one explicit instantiation per (head dim, dtype).
set(LITEATTN_SM90_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/launch.cu
)
