#include "liteattn/schedule.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <fstream>
#include <sstream>

#include "liteattn/error.hpp"

namespace liteattn {
namespace {

void check_threshold(float t, const char* argument) {
  if (std::isnan(t) || t > 0.0f)
    throw ArgumentError(argument, "expected thresholds <= 0 in log2 units, got " + std::to_string(t));
}

// A reader of standard JSON for the schedule's object {"warmup_steps": W, "thresholds": [..]}
// that accepts what Python's json module reads and writes: other members are skipped whatever
// their value, a repeated member keeps its last value, and -Infinity / Infinity / NaN are read as
// numbers (NaN is then rejected as a threshold). Nothing may follow the object.
class ScheduleJsonReader {
 public:
  explicit ScheduleJsonReader(const std::string& text) : text_(text) {}

  void parse(std::vector<float>& thresholds, int& warmup) {
    bool have_thresholds = false;
    expect('{');
    if (!accept('}')) {
      do {
        const std::string key = string();
        expect(':');
        if (key == "warmup_steps") {
          warmup = warmup_steps();
        } else if (key == "thresholds") {
          have_thresholds = true;
          thresholds.clear();
          expect('[');
          if (!accept(']')) {
            do thresholds.push_back(to_float(number()));
            while (accept(','));
            expect(']');
          }
        } else {
          skip_value(0);
        }
      } while (accept(','));
      expect('}');
    }
    space();
    if (pos_ != text_.size()) fail("unexpected text after the object");
    if (!have_thresholds) fail("missing \"thresholds\"");
  }

 private:
  static constexpr int kMaxDepth = 256;

  [[noreturn]] void fail(const std::string& what) const {
    throw ArgumentError("schedule", "invalid JSON at offset " + std::to_string(pos_) + ": " + what);
  }
  void space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  bool peek(char c) { space(); return pos_ < text_.size() && text_[pos_] == c; }
  bool accept(char c) { if (!peek(c)) return false; ++pos_; return true; }
  void expect(char c) { if (!accept(c)) fail(std::string("expected '") + c + "'"); }
  bool accept_word(const char* word) {
    const std::size_t n = std::strlen(word);
    if (text_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }
  bool digit() const { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; }
  void digits() {
    if (!digit()) fail("expected a digit");
    while (digit()) ++pos_;
  }
  unsigned hex4() {
    unsigned value = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      const char c = pos_ < text_.size() ? text_[pos_] : '\0';
      const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (v < 0) fail("expected four hex digits after \\u");
      value = value * 16 + unsigned(v);
    }
    return value;
  }
  static void append_utf8(std::string& s, unsigned code) {
    if (code < 0x80) {
      s += char(code);
    } else if (code < 0x800) {
      s += char(0xC0 | (code >> 6));
      s += char(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      s += char(0xE0 | (code >> 12));
      s += char(0x80 | ((code >> 6) & 0x3F));
      s += char(0x80 | (code & 0x3F));
    } else {
      s += char(0xF0 | (code >> 18));
      s += char(0x80 | ((code >> 12) & 0x3F));
      s += char(0x80 | ((code >> 6) & 0x3F));
      s += char(0x80 | (code & 0x3F));
    }
  }
  // A string with its escapes decoded (keys are compared decoded, as Python does).
  std::string string() {
    expect('"');
    std::string s;
    while (true) {
      if (pos_ >= text_.size()) fail("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return s;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        s += c;
        continue;
      }
      if (pos_ >= text_.size()) fail("unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case '"': case '\\': case '/': s += e; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'u': {
          const unsigned code = hex4();
          const bool pair = code >= 0xD800 && code < 0xDC00 && text_.compare(pos_, 2, "\\u") == 0;
          if (!pair) {
            append_utf8(s, code);
            break;
          }
          pos_ += 2;  // a surrogate pair: one code point
          const unsigned low = hex4();
          if (low >= 0xDC00 && low < 0xE000) {
            append_utf8(s, 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00));
          } else {
            append_utf8(s, code);
            append_utf8(s, low);
          }
          break;
        }
        default: fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }
  // A JSON number, or -Infinity / Infinity / NaN as Python writes them.
  double number() {
    space();
    const std::size_t begin = pos_;
    if (accept_word("NaN")) return std::nan("");
    if (accept_word("Infinity")) return INFINITY;
    if (accept_word("-Infinity")) return -INFINITY;
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    if (pos_ < text_.size() && text_[pos_] == '0') ++pos_;
    else if (digit()) digits();
    else fail("expected a number");
    if (pos_ < text_.size() && text_[pos_] == '.') ++pos_, digits();
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      digits();
    }
    // strtod on exactly the span checked above; out of range gives +-inf (1e999) or 0.
    return std::strtod(text_.substr(begin, pos_ - begin).c_str(), nullptr);
  }
  // Beyond float's range: the infinity of that sign (a plain cast would be undefined there).
  static float to_float(double value) {
    constexpr double kMax = std::numeric_limits<float>::max();
    if (value > kMax) return INFINITY;
    if (value < -kMax) return -INFINITY;
    return static_cast<float>(value);
  }
  int warmup_steps() {
    const double value = number();
    if (!(value >= 0 && value <= double(std::numeric_limits<int>::max()) && value == std::floor(value))) {
      char shown[32];
      std::snprintf(shown, sizeof shown, "%.17g", value);
      throw ArgumentError("warmup_steps", std::string("expected an integer >= 0, got ") + shown);
    }
    return static_cast<int>(value);
  }
  void skip_value(int depth) {
    if (depth > kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    space();
    if (peek('"')) {
      string();
    } else if (accept('[')) {
      if (accept(']')) return;
      do skip_value(depth + 1);
      while (accept(','));
      expect(']');
    } else if (accept('{')) {
      if (accept('}')) return;
      do {
        string();
        expect(':');
        skip_value(depth + 1);
      } while (accept(','));
      expect('}');
    } else if (!accept_word("true") && !accept_word("false") && !accept_word("null")) {
      number();
    }
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
    // -inf as -1e999: standard JSON (no -Infinity token) that every reader takes as -inf.
    if (std::isinf(thresholds_[i])) std::snprintf(buffer, sizeof buffer, "-1e999");
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
