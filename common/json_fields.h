// JsonFields: reads and validates the members of one JSON object, naming the exact field on error.
//
// Every getter marks its key as known; finish() then rejects any member nobody asked for, so
// unknown fields are errors rather than silently ignored. The first error wins and later getters
// return their defaults, so validation code reads top to bottom without early returns:
//
//   JsonFields f(json, "hyperparameters");
//   h.epochs = f.integer("epochs", 1, 100, 3);
//   h.learning_rate = f.number("learning_rate", {.min = 0, .min_exclusive = true, .max = 1}, 1e-3);
//   BITFLEET_RETURN_IF_ERROR(f.finish());
//
// Error fields are dotted paths ("task.labels[2]"); messages say what is allowed and what came.
// Thread-safety: one instance per thread.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace bitfleet::common {

struct NumberRange {
  double min = -1e300;
  bool min_exclusive = false;
  double max = 1e300;
  bool max_exclusive = false;
};

class JsonFields {
 public:
  // `path` is the dotted location of `object` itself ("" at the top level).
  JsonFields(const nlohmann::json& object, std::string path);

  bool has(std::string_view key) const;

  // Required when `fallback` is std::nullopt; strings may be limited in length and must be
  // non-empty unless `allow_empty`.
  std::string string(std::string_view key, std::optional<std::string> fallback = std::nullopt,
                     size_t max_length = 4096, bool allow_empty = false);
  int64_t integer(std::string_view key, int64_t min, int64_t max,
                  std::optional<int64_t> fallback = std::nullopt);
  double number(std::string_view key, NumberRange range, std::optional<double> fallback);
  bool boolean(std::string_view key, std::optional<bool> fallback);
  std::vector<std::string> string_list(std::string_view key, size_t min_items, size_t max_items,
                                       size_t max_length, bool unique);
  // The raw member (null when absent), for values whose shape depends on other fields. The caller
  // validates it and reports through fail().
  const nlohmann::json& raw(std::string_view key);

  // Records an error at `key` (relative to this object) unless one is already recorded.
  void fail(std::string_view key, std::string message);
  // The full dotted path of a member of this object.
  std::string path_of(std::string_view key) const;

  bool ok() const { return error_.is_ok(); }
  // The first error so far (ok when none), without finish()'s check for unknown fields.
  const Status& error() const { return error_; }
  // The first error, or an unknown-field error, or ok.
  Status finish();

 private:
  const nlohmann::json* member(std::string_view key);

  const nlohmann::json& object_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
  Status error_;
};

// Describes a JSON value's type for messages: "a string", "an integer", "null".
std::string json_type_name(const nlohmann::json& value);

// The deepest nesting of arrays and objects that parse_json accepts. Every JSON input from outside
// (request bodies, worker reports, JSONL records) passes through parse_json.
inline constexpr size_t kMaxJsonDepth = 64;

// Parses `text` as JSON; the error names `what` (a file, "request body") and the byte offset.
// Never throws: invalid syntax, numbers out of range and nesting deeper than kMaxJsonDepth are
// all invalid_argument.
Result<nlohmann::json> parse_json(std::string_view text, std::string_view what);

// Parses all of `text` as a decimal int64 (an optional '-', digits, nothing else); the error names
// `what`. Never throws (the std::sto* functions do, and accept trailing junk).
Result<int64_t> parse_int64(std::string_view text, std::string_view what);

}  // namespace bitfleet::common
