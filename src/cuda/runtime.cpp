// The few CUDA runtime calls the host-side core needs. Errors become liteattn::CudaError.
#include <cuda_runtime.h>

#include <string>

#include "core/backends.hpp"
#include "liteattn/error.hpp"

namespace liteattn {
namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw CudaError(std::string(what) + ": " + cudaGetErrorString(status));
}

// Makes `device` current for the scope and restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error for later calls
    return 0;
  }
  return count;
}

int cuda_device_capability(int device) {
  int major = 0, minor = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute");
  return major * 10 + minor;
}

void* cuda_allocate(std::size_t bytes, int device) {
  DeviceGuard guard(device);
  void* ptr = nullptr;
  check(cudaMalloc(&ptr, bytes), "cudaMalloc (skip state)");
  return ptr;
}

void cuda_release(void* ptr, int device) {
  DeviceGuard guard(device);
  cudaFree(ptr);
}

void cuda_copy_to_host(void* host, const void* device_ptr, std::size_t bytes, int device) {
  DeviceGuard guard(device);
  check(cudaMemcpy(host, device_ptr, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (skip state to host)");
}

}  // namespace liteattn
