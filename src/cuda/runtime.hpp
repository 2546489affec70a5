// Small CUDA runtime helpers shared by the CUDA backends (private to the library).
#pragma once

#include <cuda_runtime.h>

#include <atomic>

namespace liteattn::cuda {

// Throws liteattn::CudaError naming the failed expression, the error and file:line.
[[noreturn]] void throw_cuda_error(cudaError_t code, const char* expression, const char* file, int line);

inline void check(cudaError_t code, const char* expression, const char* file, int line) {
  if (code != cudaSuccess) throw_cuda_error(code, expression, file, line);
}

// Number of multiprocessors of a device (cached per device).
int sm_count(int device);

// Makes `device` current for the lifetime of the guard and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace liteattn::cuda

#define LITEATTN_CUDA_CHECK(expr) ::liteattn::cuda::check((expr), #expr, __FILE__, __LINE__)

namespace liteattn::cuda {

// Raises `kernel`'s dynamic shared-memory limit to `bytes` on `device`. The limit is a per-device
// property of the function, so each launch site keeps one flag per device in `raised` and the
// runtime call happens once; later calls return at once.
template <class Kernel>
void raise_shared_memory_limit(Kernel kernel, int bytes, int device, std::atomic<bool> (&raised)[64]) {
  const bool cacheable = device >= 0 && device < 64;
  if (cacheable && raised[device].load(std::memory_order_acquire)) return;
  LITEATTN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  if (cacheable) raised[device].store(true, std::memory_order_release);
}

}  // namespace liteattn::cuda
