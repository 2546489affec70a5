#include "cli_args.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace liteattn::cli {

Options::Options(const std::vector<std::string>& args, const std::set<std::string>& valued,
                 const std::set<std::string>& flags) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + a + "' (options start with --)");
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) value = name.substr(eq + 1), name = name.substr(0, eq);
    if (flags.count(name)) {
      if (inline_value) throw UsageError("--" + name + ": takes no value");
      flags_.insert(name);
    } else if (valued.count(name)) {
      if (!inline_value) {
        if (i + 1 >= args.size()) throw UsageError("--" + name + ": expected a value");
        value = args[++i];
      }
      values_[name] = value;
    } else {
      throw UsageError("--" + name + ": unknown option");
    }
  }
}

std::string Options::text(const std::string& name, const std::string& fallback) const {
  const auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::int64_t Options::integer(const std::string& name, std::int64_t fallback, std::int64_t min, std::int64_t max) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (errno || end == it->second.c_str() || *end || v < min || v > max)
    throw UsageError("--" + name + ": expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                     "], got '" + it->second + "'");
  return v;
}

double Options::number(const std::string& name, double fallback) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end || std::isnan(v))
    throw UsageError("--" + name + ": expected a number, got '" + it->second + "'");
  return v;
}

std::string Options::choice(const std::string& name, const std::string& fallback, const std::vector<std::string>& allowed) const {
  const std::string v = text(name, fallback);
  for (const auto& a : allowed)
    if (a == v) return v;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw UsageError("--" + name + ": expected one of " + list + ", got '" + v + "'");
}

}  // namespace liteattn::cli
