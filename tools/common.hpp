// Small pieces the subcommands share.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "cli_args.hpp"
#include "device_tensor.hpp"

namespace liteattn::cli {

// --backend auto|cpu|cuda -> the device the tensors live on.
inline Device pick_device(const std::string& backend) {
  if (backend == "cpu") return {DeviceKind::cpu, 0};
  if (backend == "cuda") {
    if (!cuda_available()) throw UsageError("--backend: cuda requested but no CUDA device is available");
    return {DeviceKind::cuda, 0};
  }
  return cuda_available() ? Device{DeviceKind::cuda, 0} : Device{DeviceKind::cpu, 0};
}

// --backend for the commands that can name a kernel: auto|cpu|cuda as above, or sm90|sm80 for
// CUDA tensors served by that kernel (sm80 on a Hopper GPU: the portable fallback).
struct BackendChoice {
  Device device;
  std::optional<Backend> backend;  // unset: by the device
};
inline const std::vector<std::string> kBackendChoices = {"auto", "cpu", "cuda", "sm90", "sm80"};
inline BackendChoice pick_backend(const std::string& name) {
  if (name == "sm90" || name == "sm80") {
    if (!cuda_available()) throw UsageError("--backend: " + name + " requested but no CUDA device is available");
    return {{DeviceKind::cuda, 0}, name == "sm90" ? Backend::sm90 : Backend::sm80};
  }
  return {pick_device(name), std::nullopt};
}

// The backend that serves tensors on `device` when none is named (for reports).
inline std::string default_backend_name(Device device) {
  if (device.kind == DeviceKind::cpu) return "cpu";
  const auto backends = available_backends();  // cpu first, then the GPU's kernels by preference
  return backends.size() > 1 ? std::string(to_string(backends[1])) : "none";
}

inline DType pick_dtype(const Options& o, DType fallback) {
  if (!o.has("dtype")) return fallback;
  return parse_dtype(o.choice("dtype", "", {"bf16", "fp16", "fp32", "bfloat16", "float16", "float32"}), "--dtype");
}

inline AttentionArgs make_args(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v, const DeviceTensor& out,
                               const DeviceTensor* lse = nullptr) {
  AttentionArgs a;
  a.q = q.view();
  a.k = k.view();
  a.v = v.view();
  a.out = out.view();
  if (lse) a.lse = lse->view();
  return a;
}

// ||a - b|| / ||b|| in double precision.
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace liteattn::cli
