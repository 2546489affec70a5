// Errors raised by the library. Every rejected argument is reported as an ArgumentError that
// names the argument and what was expected; the binding maps it to ValueError / TypeError.
#pragma once

#include <stdexcept>
#include <string>

namespace liteattn {

class ArgumentError : public std::invalid_argument {
 public:
  enum class Kind { value, type };

  ArgumentError(std::string argument, const std::string& message, Kind kind = Kind::value)
      : std::invalid_argument(argument + ": " + message), argument_(std::move(argument)), kind_(kind) {}

  const std::string& argument() const noexcept { return argument_; }
  Kind kind() const noexcept { return kind_; }

 private:
  std::string argument_;
  Kind kind_;
};

// A valid request that this build or this device cannot serve (e.g. no kernel for the GPU).
class UnsupportedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failure reported by the CUDA runtime.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace liteattn
