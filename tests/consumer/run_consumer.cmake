# cmake -P script for the test consumer_find_package: installs the parent build into a fresh
# prefix, then configures, builds and runs tests/consumer against that prefix.
# Inputs (-D): PARENT_BINARY_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, GENERATOR, CXX_COMPILER,
# LITEATTN_CUDA, CUDA_ROOT (when LITEATTN_CUDA), CONFIG (may be empty).
foreach(var PARENT_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: ${var} not set")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")

set(config_args)
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()

message(STATUS "installing ${PARENT_BINARY_DIR} into ${prefix}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${PARENT_BINARY_DIR}" --prefix "${prefix}" ${config_args}
                OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
if(NOT EXISTS "${prefix}/include/liteattn/liteattn.hpp")
  message(FATAL_ERROR "the install has no include/liteattn/liteattn.hpp")
endif()

set(configure_args -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DLITEATTN_CUDA=${LITEATTN_CUDA})
if(CONFIG)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${CONFIG})
endif()
if(LITEATTN_CUDA AND CUDA_ROOT)
  list(APPEND configure_args -DCUDAToolkit_ROOT=${CUDA_ROOT})
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${build}" -G "${GENERATOR}" ${configure_args}
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${build}" ${config_args} COMMAND_ERROR_IS_FATAL ANY)

find_program(consumer NAMES consumer PATHS "${build}" "${build}/${CONFIG}" NO_DEFAULT_PATH REQUIRED)
execute_process(COMMAND "${consumer}" COMMAND_ERROR_IS_FATAL ANY)
