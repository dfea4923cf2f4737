#include "common/flags.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace bitfleet::common {

Flags::Flags(int argc, char** argv, const std::set<std::string>& booleans, int first)
    : Flags(std::vector<std::string>(argv + std::min(first, argc), argv + argc), booleans) {}

Flags::Flags(std::vector<std::string> args, const std::set<std::string>& booleans) {
  bool only_positionals = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (only_positionals || a.size() < 3 || a.rfind("--", 0) != 0) {
      if (a == "--") {
        only_positionals = true;
        continue;
      }
      positionals_.push_back(a);
      continue;
    }
    std::string body = a.substr(2);
    auto eq = body.find('=');
    if (eq != std::string::npos) {
      values_.push_back({body.substr(0, eq), body.substr(eq + 1)});
    } else if (!booleans.contains(body) && i + 1 < args.size()) {
      values_.push_back({body, args[i + 1]});
      ++i;
    } else {
      values_.push_back({body, std::nullopt});
    }
  }
}

std::vector<const Flags::Value*> Flags::find(const std::string& name) {
  known_.insert(name);
  std::vector<const Value*> out;
  for (const auto& v : values_) {
    if (v.name == name) out.push_back(&v);
  }
  return out;
}

void Flags::fail(const std::string& name, const std::string& message) {
  if (error_.is_ok()) error_ = invalid_argument("--" + name + ": " + message, name);
}

std::optional<std::string> Flags::optional_string(const std::string& name) {
  auto found = find(name);
  if (found.empty()) return std::nullopt;
  if (found.size() > 1) fail(name, "given more than once");
  if (!found.back()->value) {
    fail(name, "needs a value");
    return std::nullopt;
  }
  return found.back()->value;
}

std::string Flags::string(const std::string& name, std::optional<std::string> fallback) {
  auto v = optional_string(name);
  if (v) return *v;
  if (!fallback) fail(name, "is required");
  return fallback.value_or("");
}

int64_t Flags::integer(const std::string& name, int64_t min, int64_t max, std::optional<int64_t> fallback) {
  auto v = optional_string(name);
  if (!v) {
    if (!fallback) fail(name, "is required");
    return fallback.value_or(min);
  }
  int64_t out = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || ptr != v->data() + v->size() || out < min || out > max) {
    fail(name, "must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                   "], got \"" + *v + "\"");
    return fallback.value_or(min);
  }
  return out;
}

double Flags::number(const std::string& name, double min, double max, std::optional<double> fallback) {
  auto v = optional_string(name);
  if (!v) {
    if (!fallback) fail(name, "is required");
    return fallback.value_or(min);
  }
  char* end = nullptr;
  double out = std::strtod(v->c_str(), &end);
  if (end != v->c_str() + v->size() || v->empty() || !std::isfinite(out) || out < min || out > max) {
    fail(name, "must be a number in [" + std::to_string(min) + ", " + std::to_string(max) +
                   "], got \"" + *v + "\"");
    return fallback.value_or(min);
  }
  return out;
}

bool Flags::boolean(const std::string& name) {
  bool present = false;
  for (const Value* v : find(name)) {
    if (!v->value || *v->value == "true") {
      present = true;
    } else if (*v->value == "false") {
      present = false;
    } else {
      fail(name, "is a boolean: give it bare, or as --" + name + "=true|false");
    }
  }
  return present;
}

std::vector<std::string> Flags::strings(const std::string& name) {
  std::vector<std::string> out;
  for (const Value* v : find(name)) {
    if (!v->value) {
      fail(name, "needs a value");
      return {};
    }
    out.push_back(*v->value);
  }
  return out;
}

Status Flags::finish() {
  if (!error_.is_ok()) return error_;
  for (const auto& v : values_) {
    if (!known_.contains(v.name)) return invalid_argument("unknown flag --" + v.name, v.name);
  }
  return Status::ok();
}

}  // namespace bitfleet::common
