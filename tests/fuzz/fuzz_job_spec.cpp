// Job and sweep requests as a client sends them: the JSON parser (depth limit, numbers out of
// range) and the validation, whose errors must say what is wrong; what it accepts must survive its
// own to_json and parse back to the same request, and a sweep never expands past its limit.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/job_spec.h"
#include "common/json_fields.h"
#include "common/sweep_spec.h"

using namespace bitfleet::common;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto body = parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "the request body");
  if (!body.is_ok()) return 0;
  for (FileRefs refs : {FileRefs::kFileIds, FileRefs::kLocalPaths}) {
    auto request = parse_job_request(*body, refs, "");
    if (!request.is_ok()) {
      if (request.status().message().empty()) __builtin_trap();
      continue;
    }
    const nlohmann::json again = to_json(*request);
    auto reparsed = parse_job_request(again, refs, "");
    if (!reparsed.is_ok() || to_json(*reparsed) != again) __builtin_trap();
  }
  constexpr int64_t kMaxVariants = 16;
  auto sweep = parse_sweep_request(*body, FileRefs::kFileIds, kMaxVariants);
  if (!sweep.is_ok()) {
    if (sweep.status().message().empty()) __builtin_trap();
    return 0;
  }
  const auto points = sweep->points();
  if (points.empty() || points.size() > static_cast<size_t>(kMaxVariants)) __builtin_trap();
  for (const auto& point : points) {
    if (!sweep->variant(point).is_ok()) __builtin_trap();
  }
  const nlohmann::json again = to_json(*sweep);
  auto reparsed = parse_sweep_request(again, FileRefs::kFileIds, kMaxVariants);
  if (!reparsed.is_ok() || to_json(*reparsed) != again) __builtin_trap();
  return 0;
}
