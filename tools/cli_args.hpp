// Command-line options of the liteattn program: `--name value` pairs and `--flag`s. Every bad
// argument becomes a UsageError whose message names the option; main() prints it and exits 2.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace liteattn::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Options {
 public:
  // `valued` names options that take a value, `flags` those that do not.
  Options(const std::vector<std::string>& args, const std::set<std::string>& valued, const std::set<std::string>& flags);

  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string text(const std::string& name, const std::string& fallback) const;
  std::int64_t integer(const std::string& name, std::int64_t fallback, std::int64_t min, std::int64_t max) const;
  double number(const std::string& name, double fallback) const;
  std::string choice(const std::string& name, const std::string& fallback, const std::vector<std::string>& allowed) const;

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
};

}  // namespace liteattn::cli
