// The token of an "Authorization: Bearer T" header value (RFC 6750): how the coordinator and
// bitfleet-serve read a caller's credential. The scheme is case-insensitive (RFC 9110, 11.1).
// Thread-safety: a pure function.
#pragma once

#include <optional>
#include <string_view>

namespace bitfleet::net {

// The token (leading spaces skipped), or nullopt when the value is not a Bearer credential or the
// token is empty.
std::optional<std::string_view> bearer_token(std::string_view authorization);

}  // namespace bitfleet::net
