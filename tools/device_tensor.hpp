// Tensors the CLI owns on the CPU or a CUDA device, filled from and read back as fp32 host
// vectors, and a timer that is honest on both (device events around the call on CUDA).
#pragma once

#include <functional>
#include <vector>

#include "liteattn/liteattn.hpp"

namespace liteattn::cli {

class DeviceTensor {
 public:
  DeviceTensor(Device device, DType dtype, std::vector<std::int64_t> shape);
  ~DeviceTensor();
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;

  TensorView view() const;
  std::int64_t numel() const;
  void upload(const std::vector<float>& values);  // converts to the tensor's dtype
  std::vector<float> download() const;            // converts to fp32
  void fill_bytes(unsigned char byte);            // poisons the tensor (0xff: NaN for every dtype)

 private:
  Device device_;
  DType dtype_;
  std::vector<std::int64_t> shape_;
  void* data_ = nullptr;
};

// Copies between host vectors and a state buffer on the state's device.
void copy_to_state(void* state_ptr, const void* host, std::size_t bytes, Device device);

// Runs `call` `repeats` times after `warmup` runs and returns the median milliseconds. `before`
// (outside the timed region) restores whatever the call changes, e.g. the skip state.
double median_ms(Device device, int warmup, int repeats, const std::function<void()>& call,
                 const std::function<void()>& before = {});

void synchronize(Device device);
std::string device_name(Device device);

}  // namespace liteattn::cli
