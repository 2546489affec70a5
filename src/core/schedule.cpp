#include "liteattn/schedule.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "liteattn/error.hpp"

namespace liteattn {
namespace {

void check_threshold(float t, const char* argument) {
  if (std::isnan(t) || t > 0.0f)
    throw ArgumentError(argument, "expected thresholds <= 0 in log2 units, got " + std::to_string(t));
}

// A small strict reader for the schedule's own JSON object: {"warmup_steps": W, "thresholds": [..]}.
class ScheduleJsonReader {
 public:
  explicit ScheduleJsonReader(const std::string& text) : text_(text) {}

  void parse(std::vector<float>& thresholds, int& warmup) {
    bool have_thresholds = false;
    expect('{');
    while (true) {
      const std::string key = string();
      expect(':');
      if (key == "warmup_steps") {
        warmup = static_cast<int>(number());
      } else if (key == "thresholds") {
        have_thresholds = true;
        expect('[');
        if (!peek(']'))
          do thresholds.push_back(static_cast<float>(number()));
          while (accept(','));
        expect(']');
      } else {
        skip_value();
      }
      if (!accept(',')) break;
    }
    expect('}');
    if (!have_thresholds) fail("missing \"thresholds\"");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw ArgumentError("schedule", "invalid JSON at offset " + std::to_string(pos_) + ": " + what);
  }
  void space() { while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_; }
  bool peek(char c) { space(); return pos_ < text_.size() && text_[pos_] == c; }
  bool accept(char c) { if (!peek(c)) return false; ++pos_; return true; }
  void expect(char c) { if (!accept(c)) fail(std::string("expected '") + c + "'"); }
  std::string string() {
    expect('"');
    const auto end = text_.find('"', pos_);
    if (end == std::string::npos) fail("unterminated string");
    std::string s = text_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  double number() {
    space();
    if (text_.compare(pos_, 9, "-Infinity") == 0) { pos_ += 9; return -INFINITY; }
    const char* begin = text_.c_str() + pos_;
    char* end = nullptr;
    const double value = std::strtod(begin, &end);
    if (end == begin) fail("expected a number");
    pos_ += static_cast<std::size_t>(end - begin);
    return value;
  }
  void skip_value() {
    if (peek('"')) { string(); return; }
    if (peek('[') || peek('{')) {
      int depth = 0;
      do {
        const char c = text_[pos_++];
        depth += (c == '[' || c == '{') - (c == ']' || c == '}');
      } while (depth > 0 && pos_ < text_.size());
      return;
    }
    number();
  }
  const std::string& text_;
  std::size_t pos_ = 0;
};

}  // namespace

ThresholdSchedule::ThresholdSchedule(std::vector<float> thresholds, int warmup_steps)
    : thresholds_(std::move(thresholds)), warmup_steps_(warmup_steps) {
  if (thresholds_.empty()) throw ArgumentError("thresholds", "expected at least one threshold");
  for (float t : thresholds_) check_threshold(t, "thresholds");
  if (warmup_steps_ < 0) throw ArgumentError("warmup_steps", "expected >= 0, got " + std::to_string(warmup_steps_));
}

ThresholdSchedule ThresholdSchedule::constant(float threshold, int warmup_steps) {
  return ThresholdSchedule({threshold}, warmup_steps);
}

ThresholdSchedule ThresholdSchedule::per_step(std::vector<float> thresholds, int warmup_steps) {
  return ThresholdSchedule(std::move(thresholds), warmup_steps);
}

float ThresholdSchedule::threshold(int step) const {
  if (step < 0) throw ArgumentError("step", "expected >= 0, got " + std::to_string(step));
  return thresholds_[std::min<std::size_t>(std::size_t(step), thresholds_.size() - 1)];
}

void ThresholdSchedule::apply(int step, SkipOptions& skip) const {
  skip.enabled = !is_warmup(step);
  skip.threshold = threshold(step);
}

std::string ThresholdSchedule::to_json() const {
  // Plain string building (no iostreams): this runs inside Python processes whose other
  // extensions bring their own C++ runtime state.
  std::string out = "{\"warmup_steps\": " + std::to_string(warmup_steps_) + ", \"thresholds\": [";
  for (std::size_t i = 0; i < thresholds_.size(); ++i) {
    char buffer[32];
    if (std::isinf(thresholds_[i])) std::snprintf(buffer, sizeof buffer, "-Infinity");
    else std::snprintf(buffer, sizeof buffer, "%.9g", double(thresholds_[i]));
    out += (i ? ", " : "");
    out += buffer;
  }
  return out + "]}";
}

ThresholdSchedule ThresholdSchedule::from_json(const std::string& text) {
  std::vector<float> thresholds;
  int warmup = 0;
  ScheduleJsonReader(text).parse(thresholds, warmup);
  return ThresholdSchedule(std::move(thresholds), warmup);
}

ThresholdSchedule ThresholdSchedule::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ArgumentError("schedule", "cannot open '" + path + "'");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return from_json(buffer.str());
}

void ThresholdSchedule::save(const std::string& path) const {
  std::ofstream out(path);
  if (!out) throw ArgumentError("schedule", "cannot write '" + path + "'");
  out << to_json() << "\n";
}

}  // namespace liteattn
