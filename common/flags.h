// Flags: the command-line parser of every bitfleet binary.
//
//   Flags flags(argc, argv, {"json"});    // argv[0] skipped; "json" is a boolean flag
//   std::string url = flags.string("coordinator", "");
//   int slots = flags.integer("slots", 1, 1024, 8);
//   BITFLEET_RETURN_IF_ERROR(flags.finish());  // unknown flags and bad values name the flag
//
// Accepts --name value and --name=value; booleans (named up front, so that they never swallow the
// positional after them) are bare --name. "--" ends flags.
// Thread-safety: one instance per thread.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace bitfleet::common {

class Flags {
 public:
  Flags(int argc, char** argv, const std::set<std::string>& booleans = {}, int first = 1);
  Flags(std::vector<std::string> args, const std::set<std::string>& booleans);

  std::string string(const std::string& name, std::optional<std::string> fallback = std::nullopt);
  std::optional<std::string> optional_string(const std::string& name);
  int64_t integer(const std::string& name, int64_t min, int64_t max, std::optional<int64_t> fallback);
  double number(const std::string& name, double min, double max, std::optional<double> fallback);
  bool boolean(const std::string& name);
  // All values of a repeatable flag, in order.
  std::vector<std::string> strings(const std::string& name);

  const std::vector<std::string>& positionals() const { return positionals_; }
  // The first error, or an unknown flag, or ok.
  Status finish();

 private:
  struct Value {
    std::string name;
    std::optional<std::string> value;  // nullopt: bare --name (booleans, or a value missing)
  };
  std::vector<const Value*> find(const std::string& name);
  void fail(const std::string& name, const std::string& message);

  std::vector<Value> values_;
  std::vector<std::string> positionals_;
  std::set<std::string> known_;
  Status error_;
};

}  // namespace bitfleet::common
