// CUDA runtime helpers: error checks that throw CudaError (with file and line), device
// capability and count, SM counts, and the few runtime calls the host-side core needs.
#include "cuda/runtime.hpp"

#include <array>
#include <atomic>
#include <string>

#include "core/backends.hpp"
#include "liteattn/error.hpp"

namespace liteattn {
namespace cuda {

void throw_cuda_error(cudaError_t code, const char* expression, const char* file, int line) {
  // Clear a non-sticky error so the next call does not report it again.
  (void)cudaGetLastError();
  throw CudaError(std::string("CUDA error ") + cudaGetErrorName(code) + " (" + cudaGetErrorString(code) +
                  ") in " + expression + " at " + file + ":" + std::to_string(line));
}

namespace {

// A device property that cannot change while the process runs, read once per device (devices
// 0-63; others are read every time). Every call selects a backend by the capability and sizes
// a persistent grid by the SM count, so neither may cost a runtime query per call.
int device_property(std::array<std::atomic<int>, 64>& cache, int device, int (*read)(int)) {
  const bool cacheable = device >= 0 && device < int(cache.size());
  if (cacheable) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  const int value = read(device);
  if (cacheable) cache[device].store(value, std::memory_order_relaxed);
  return value;
}

int read_sm_count(int device) {
  int count = 0;
  LITEATTN_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

int read_capability(int device) {
  if (device >= cuda_device_count()) return 0;  // no such GPU (0 is never cached)
  int major = 0, minor = 0;
  LITEATTN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  LITEATTN_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

}  // namespace

int sm_count(int device) {
  static std::array<std::atomic<int>, 64> cache{};
  return device_property(cache, device, read_sm_count);
}

DeviceGuard::DeviceGuard(int device) {
  int current = 0;
  LITEATTN_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    LITEATTN_CUDA_CHECK(cudaSetDevice(device));
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) (void)cudaSetDevice(previous_);
}

}  // namespace cuda

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error for later calls
    return 0;
  }
  return count;
}

int cuda_device_capability(int device) {
  static std::array<std::atomic<int>, 64> cache{};
  return cuda::device_property(cache, device, cuda::read_capability);
}

void* cuda_allocate(std::size_t bytes, int device) {
  cuda::DeviceGuard guard(device);
  void* ptr = nullptr;
  LITEATTN_CUDA_CHECK(cudaMalloc(&ptr, bytes));
  return ptr;
}

void cuda_release(void* ptr, int device) {
  cuda::DeviceGuard guard(device);
  (void)cudaFree(ptr);
}

void cuda_copy_to_host(void* host, const void* device_ptr, std::size_t bytes, int device) {
  cuda::DeviceGuard guard(device);
  // These copies inspect a state after calls on any stream, including non-blocking ones that a
  // plain cudaMemcpy (legacy default stream) is not ordered after: the device's work first.
  LITEATTN_CUDA_CHECK(cudaDeviceSynchronize());
  LITEATTN_CUDA_CHECK(cudaMemcpy(host, device_ptr, bytes, cudaMemcpyDeviceToHost));
}

}  // namespace liteattn
