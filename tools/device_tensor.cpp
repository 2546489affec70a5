#include "device_tensor.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#if defined(LITEATTN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace liteattn::cli {
namespace {

#if defined(LITEATTN_WITH_CUDA)
void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw CudaError(std::string(what) + ": " + cudaGetErrorString(status));
}
#endif

std::vector<unsigned char> encode(const std::vector<float>& values, DType dtype) {
  std::vector<unsigned char> bytes(values.size() * dtype_size(dtype));
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::f32) {
      std::memcpy(&bytes[i * 4], &values[i], 4);
    } else {
      const std::uint16_t h = dtype == DType::bf16 ? float_to_bf16(values[i]) : float_to_f16(values[i]);
      std::memcpy(&bytes[i * 2], &h, 2);
    }
  }
  return bytes;
}

std::vector<float> decode(const unsigned char* bytes, std::size_t n, DType dtype) {
  std::vector<float> values(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (dtype == DType::f32) {
      std::memcpy(&values[i], bytes + i * 4, 4);
    } else {
      std::uint16_t h;
      std::memcpy(&h, bytes + i * 2, 2);
      values[i] = dtype == DType::bf16 ? bf16_to_float(h) : f16_to_float(h);
    }
  }
  return values;
}

}  // namespace

DeviceTensor::DeviceTensor(Device device, DType dtype, std::vector<std::int64_t> shape)
    : device_(device), dtype_(dtype), shape_(std::move(shape)) {
  const std::size_t bytes = std::size_t(numel()) * dtype_size(dtype);
  if (device.kind == DeviceKind::cpu) {
    data_ = ::operator new(bytes);
  } else {
#if defined(LITEATTN_WITH_CUDA)
    check(cudaSetDevice(device.index), "cudaSetDevice");
    check(cudaMalloc(&data_, bytes), "cudaMalloc");
#else
    throw UnsupportedError("this build has no CUDA support");
#endif
  }
}

DeviceTensor::~DeviceTensor() {
  if (device_.kind == DeviceKind::cpu) {
    ::operator delete(data_);
  } else {
#if defined(LITEATTN_WITH_CUDA)
    cudaFree(data_);
#endif
  }
}

std::int64_t DeviceTensor::numel() const {
  std::int64_t n = 1;
  for (auto s : shape_) n *= s;
  return n;
}

TensorView DeviceTensor::view() const {
  TensorView t;
  t.data = data_;
  t.dtype = dtype_;
  t.device = device_;
  t.rank = static_cast<int>(shape_.size());
  std::int64_t step = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.shape[d] = shape_[d];
    t.stride[d] = step;
    step *= shape_[d];
  }
  return t;
}

void DeviceTensor::upload(const std::vector<float>& values) {
  const auto bytes = encode(values, dtype_);
  copy_to_state(data_, bytes.data(), bytes.size(), device_);
}

std::vector<float> DeviceTensor::download() const {
  const std::size_t n = std::size_t(numel()), bytes = n * dtype_size(dtype_);
  if (device_.kind == DeviceKind::cpu) return decode(static_cast<const unsigned char*>(data_), n, dtype_);
  std::vector<unsigned char> host(bytes);
#if defined(LITEATTN_WITH_CUDA)
  check(cudaMemcpy(host.data(), data_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
#endif
  return decode(host.data(), n, dtype_);
}

void DeviceTensor::fill_bytes(unsigned char byte) {
  const std::size_t bytes = std::size_t(numel()) * dtype_size(dtype_);
  if (device_.kind == DeviceKind::cpu) {
    std::memset(data_, byte, bytes);
    return;
  }
#if defined(LITEATTN_WITH_CUDA)
  check(cudaMemset(data_, byte, bytes), "cudaMemset");
#endif
}

void copy_to_state(void* state_ptr, const void* host, std::size_t bytes, Device device) {
  if (device.kind == DeviceKind::cpu) {
    std::memcpy(state_ptr, host, bytes);
    return;
  }
#if defined(LITEATTN_WITH_CUDA)
  check(cudaMemcpy(state_ptr, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
#endif
}

void synchronize(Device device) {
#if defined(LITEATTN_WITH_CUDA)
  if (device.kind == DeviceKind::cuda) check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
#endif
}

double median_ms(Device device, int warmup, int repeats, const std::function<void()>& call,
                 const std::function<void()>& before) {
  for (int i = 0; i < warmup; ++i) {
    if (before) before();
    call();
  }
  synchronize(device);
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    if (before) before();
    synchronize(device);
    if (device.kind == DeviceKind::cpu) {
      const auto start = std::chrono::steady_clock::now();
      call();
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    } else {
#if defined(LITEATTN_WITH_CUDA)
      cudaEvent_t start, stop;
      check(cudaEventCreate(&start), "cudaEventCreate");
      check(cudaEventCreate(&stop), "cudaEventCreate");
      check(cudaEventRecord(start), "cudaEventRecord");
      call();
      check(cudaEventRecord(stop), "cudaEventRecord");
      check(cudaEventSynchronize(stop), "cudaEventSynchronize");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
      times.push_back(ms);
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
#endif
    }
  }
  std::sort(times.begin(), times.end());
  return times.empty() ? 0.0 : times[times.size() / 2];
}

std::string device_name(Device device) {
  if (device.kind == DeviceKind::cpu) return "cpu";
#if defined(LITEATTN_WITH_CUDA)
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device.index) == cudaSuccess) return prop.name;
#endif
  return to_string(device);
}

}  // namespace liteattn::cli
