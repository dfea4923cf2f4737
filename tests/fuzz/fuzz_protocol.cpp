// The coordinator's replies as rank 0's agent receives them (common/protocol.h): registration,
// lease grant, heartbeat. Garbage must be a Status; whatever is accepted must encode and parse
// back to the same message.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/protocol.h"

using namespace bitfleet::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  if (auto grant = parse_lease_grant(body); grant.is_ok()) {
    auto again = parse_lease_grant(to_json(*grant).dump());
    if (!again.is_ok() || to_json(*again) != to_json(*grant)) __builtin_trap();
  }
  if (auto hb = parse_heartbeat_reply(body); hb.is_ok()) {
    auto again = parse_heartbeat_reply(to_json(*hb).dump());
    if (!again.is_ok() || again->cancel != hb->cancel) __builtin_trap();
  }
  if (auto reg = parse_registration_reply(body); reg.is_ok()) {
    auto again = parse_registration_reply(to_json(*reg).dump());
    if (!again.is_ok() || again->id != reg->id) __builtin_trap();
  }
  return 0;
}
