// Both directions of common/protocol.h: the coordinator's replies as rank 0's agent receives them
// (registration, lease grant, heartbeat) and the worker's requests as the coordinator receives
// them (registration, lease, heartbeat, reports). Garbage must be a Status; whatever is accepted
// must encode and parse back to the same message.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/json_fields.h"
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
  auto json = bitfleet::common::parse_json(body, "body");
  if (!json.is_ok()) return 0;
  auto round_trips = [&](auto parse) {
    if (auto m = parse(*json); m.is_ok()) {
      auto again = parse(to_json(*m));
      if (!again.is_ok() || to_json(*again) != to_json(*m)) __builtin_trap();
    }
  };
  round_trips(parse_registration);
  round_trips(parse_lease_request);
  round_trips(parse_heartbeat);
  round_trips(parse_events_report);
  round_trips(parse_complete_report);
  round_trips(parse_fail_report);
  round_trips(parse_release_report);
  return 0;
}
