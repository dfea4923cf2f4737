// Job requests as a client sends them: the JSON parser (depth limit, numbers out of range) and
// the job-spec validation, whose errors must name a field; what it accepts must survive its own
// to_json and parse back to the same request.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/job_spec.h"
#include "common/json_fields.h"

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
  return 0;
}
