# csrc/common: pieces every native module shares. Each module compiles the sources it needs into
# itself (no shared library to install or find at import time); headers are included as
# "common/<file>" from the csrc root.
set(NEEDLE_CSRC_DIR ${CMAKE_CURRENT_LIST_DIR}/..)
# The fork-join pool and CPU feature probe: baseline x86-64 code, used by both CPU modules.
set(NEEDLE_COMMON_CPU_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/thread_pool.cc
  ${CMAKE_CURRENT_LIST_DIR}/cpu_features.cc)
