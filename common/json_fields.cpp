#include "common/json_fields.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <sstream>

namespace bitfleet::common {
namespace {

std::string format_number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string describe_range(const NumberRange& r) {
  std::string out = r.min_exclusive ? "(" : "[";
  out += format_number(r.min) + ", " + format_number(r.max);
  out += r.max_exclusive ? ")" : "]";
  return out;
}

// A short rendering of a value for an error message. Containers are described, not dumped: a
// user's value may be large, and dumping it would cost its size for a 60-byte message.
std::string abbreviate(const nlohmann::json& value) {
  if (value.is_array()) return "an array of " + std::to_string(value.size()) + " items";
  if (value.is_object()) return "an object of " + std::to_string(value.size()) + " members";
  std::string dumped = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (dumped.size() > 60) dumped = dumped.substr(0, 57) + "...";
  return dumped;
}

// The deepest nesting of arrays and objects in `text`, scanning no further than one level past
// `limit` (strings skipped, escapes honoured). Iterative: the input cannot make it recurse.
size_t nesting_depth(std::string_view text, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

std::string json_type_name(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "an integer";
    case nlohmann::json::value_t::number_float: return "a number";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

Result<nlohmann::json> parse_json(std::string_view text, std::string_view what) {
  // Deep nesting is refused before parsing: nlohmann's dump() and destructor recurse per level,
  // so a 120 KB body of 60,000 nested arrays would overflow a handler thread's stack later.
  if (nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return invalid_argument(std::string(what) + " nests arrays and objects more than " +
                            std::to_string(kMaxJsonDepth) + " levels deep");
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    return invalid_argument(std::string(what) + " is not valid JSON (byte " + std::to_string(e.byte) + ")");
  } catch (const nlohmann::json::exception& e) {
    // out_of_range: a number beyond a double's range (1e400); the message names no byte.
    std::string reason = e.id == 406 ? "a number is out of range" : "it cannot be represented";
    return invalid_argument(std::string(what) + " is not valid JSON: " + reason);
  }
}

Result<int64_t> parse_int64(std::string_view text, std::string_view what) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || stop != end) {
    return invalid_argument(std::string(what) + " must be an integer in [" + std::to_string(INT64_MIN) + ", " +
                                std::to_string(INT64_MAX) + "], got \"" + std::string(text.substr(0, 40)) + "\"",
                            std::string(what));
  }
  return value;
}

JsonFields::JsonFields(const nlohmann::json& object, std::string path)
    : object_(object), path_(std::move(path)) {
  if (!object_.is_object()) {
    error_ = invalid_argument((path_.empty() ? std::string("body") : path_) + ": must be an object, got " +
                                  json_type_name(object_),
                              path_);
  }
}

std::string JsonFields::path_of(std::string_view key) const {
  // An empty key is a key too (JSON allows it): name it "" so that a refusal always names a field.
  const std::string name = key.empty() ? "\"\"" : std::string(key);
  if (path_.empty()) return name;
  return path_ + "." + name;
}

bool JsonFields::has(std::string_view key) const {
  if (!object_.is_object()) return false;
  auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

const nlohmann::json* JsonFields::member(std::string_view key) {
  known_.emplace(key);
  if (!error_.is_ok() || !object_.is_object()) return nullptr;
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

void JsonFields::fail(std::string_view key, std::string message) {
  if (!error_.is_ok()) return;
  std::string field = path_of(key);
  error_ = invalid_argument(field + ": " + message, field);
}

std::string JsonFields::string(std::string_view key, std::optional<std::string> fallback,
                               size_t max_length, bool allow_empty) {
  const nlohmann::json* v = member(key);
  if (v == nullptr) {
    if (!fallback && error_.is_ok()) fail(key, "is required");
    return fallback.value_or("");
  }
  if (!v->is_string()) {
    fail(key, "must be a string, got " + json_type_name(*v));
    return fallback.value_or("");
  }
  const auto& s = v->get_ref<const std::string&>();
  if (s.empty() && !allow_empty) {
    fail(key, "must not be empty");
  } else if (s.size() > max_length) {
    fail(key, "must be at most " + std::to_string(max_length) + " bytes, got " +
                  std::to_string(s.size()));
  }
  return s;
}

int64_t JsonFields::integer(std::string_view key, int64_t min, int64_t max,
                            std::optional<int64_t> fallback) {
  const nlohmann::json* v = member(key);
  const std::string allowed = "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  if (v == nullptr) {
    if (!fallback && error_.is_ok()) fail(key, "is required: " + allowed);
    return fallback.value_or(min);
  }
  int64_t value = 0;
  if (v->is_number_integer()) {
    value = v->get<int64_t>();
  } else if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) {
      fail(key, "must be " + allowed + ", got " + abbreviate(*v));
      return fallback.value_or(min);
    }
    value = static_cast<int64_t>(u);
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             v->get<double>() == std::trunc(v->get<double>()) && std::fabs(v->get<double>()) < 9.0e18) {
    // JSON has one number type: 2.0 is the integer 2 (as JSON Schema's "integer" says).
    value = static_cast<int64_t>(v->get<double>());
  } else {
    fail(key, "must be " + allowed + ", got " + json_type_name(*v) + " " + abbreviate(*v));
    return fallback.value_or(min);
  }
  if (value < min || value > max) {
    fail(key, "must be " + allowed + ", got " + std::to_string(value));
    return fallback.value_or(min);
  }
  return value;
}

double JsonFields::number(std::string_view key, NumberRange range, std::optional<double> fallback) {
  const nlohmann::json* v = member(key);
  const std::string allowed = "a number in " + describe_range(range);
  if (v == nullptr) {
    if (!fallback && error_.is_ok()) fail(key, "is required: " + allowed);
    return fallback.value_or(range.min);
  }
  if (!v->is_number()) {
    fail(key, "must be " + allowed + ", got " + json_type_name(*v) + " " + abbreviate(*v));
    return fallback.value_or(range.min);
  }
  double value = v->get<double>();
  bool below = range.min_exclusive ? value <= range.min : value < range.min;
  bool above = range.max_exclusive ? value >= range.max : value > range.max;
  if (!std::isfinite(value) || below || above) {
    fail(key, "must be " + allowed + ", got " + format_number(value));
    return fallback.value_or(range.min);
  }
  return value;
}

bool JsonFields::boolean(std::string_view key, std::optional<bool> fallback) {
  const nlohmann::json* v = member(key);
  if (v == nullptr) {
    if (!fallback && error_.is_ok()) fail(key, "is required");
    return fallback.value_or(false);
  }
  if (!v->is_boolean()) {
    fail(key, "must be a boolean, got " + json_type_name(*v));
    return fallback.value_or(false);
  }
  return v->get<bool>();
}

std::vector<std::string> JsonFields::string_list(std::string_view key, size_t min_items,
                                                 size_t max_items, size_t max_length, bool unique) {
  std::vector<std::string> out;
  const nlohmann::json* v = member(key);
  const std::string allowed = "an array of " + std::to_string(min_items) + " to " +
                              std::to_string(max_items) + " non-empty strings";
  if (v == nullptr) {
    if (min_items > 0) fail(key, "is required: " + allowed);
    return out;
  }
  if (!v->is_array()) {
    fail(key, "must be " + allowed + ", got " + json_type_name(*v));
    return out;
  }
  if (v->size() < min_items || v->size() > max_items) {
    fail(key, "must be " + allowed + ", got " + std::to_string(v->size()) + " items");
    return out;
  }
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < v->size(); ++i) {
    const auto& item = (*v)[i];
    std::string at = std::string(key) + "[" + std::to_string(i) + "]";
    if (!item.is_string()) {
      fail(at, "must be a string, got " + json_type_name(item));
      return {};
    }
    const auto& s = item.get_ref<const std::string&>();
    if (s.empty() || s.size() > max_length) {
      fail(at, "must be a non-empty string of at most " + std::to_string(max_length) + " bytes");
      return {};
    }
    if (unique && !seen.insert(s).second) {
      fail(at, "duplicates \"" + s + "\"; items must be unique");
      return {};
    }
    out.push_back(s);
  }
  return out;
}

const nlohmann::json& JsonFields::raw(std::string_view key) {
  static const nlohmann::json kNull;
  const nlohmann::json* v = member(key);
  return v == nullptr ? kNull : *v;
}

Status JsonFields::finish() {
  if (!error_.is_ok() || !object_.is_object()) return error_;
  for (const auto& [key, value] : object_.items()) {
    if (!known_.contains(key)) {
      std::string field = path_of(key);
      std::string names;
      for (const auto& k : known_) names += (names.empty() ? "" : ", ") + k;
      return invalid_argument(field + ": unknown field (allowed: " + names + ")", field);
    }
  }
  return Status::ok();
}

}  // namespace bitfleet::common
