# Locates the CUTLASS/CuTe headers: CUTLASS_DIR (a CUTLASS checkout or include dir) if given,
# else the `nvidia-cutlass` Python wheel (headers under cutlass_library/source/include).
set(CUTLASS_DIR "" CACHE PATH "CUTLASS source tree or include directory")
set(CUTLASS_INCLUDE_DIR "")
foreach(_candidate "${CUTLASS_DIR}/include" "${CUTLASS_DIR}")
  if(CUTLASS_DIR AND EXISTS "${_candidate}/cute/tensor.hpp")
    set(CUTLASS_INCLUDE_DIR "${_candidate}")
    break()
  endif()
endforeach()
if(NOT CUTLASS_INCLUDE_DIR)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c
      "import cutlass_library, os; print(os.path.join(os.path.dirname(cutlass_library.__file__), 'source', 'include'))"
    OUTPUT_VARIABLE _wheel_include OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_wheel_include AND EXISTS "${_wheel_include}/cute/tensor.hpp")
    set(CUTLASS_INCLUDE_DIR "${_wheel_include}")
  endif()
endif()
if(NOT CUTLASS_INCLUDE_DIR)
  message(FATAL_ERROR "CUTLASS headers not found: `pip install nvidia-cutlass==4.2.0.0`, "
                      "set CUTLASS_DIR, or configure with -DLITEATTN_CUDA=OFF")
endif()
message(STATUS "CUTLASS headers: ${CUTLASS_INCLUDE_DIR}")
