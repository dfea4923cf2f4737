// The parts of an HTTP request's head that bitfleet checks itself, apart from Beast's parser:
// the target's percent-decoding into path and query, and the framing rules of RFC 9112 that
// Beast leaves to the server (Host on HTTP/1.1, only the chunked transfer coding).
// Thread-safety: free functions.
#pragma once

#include <string_view>

#include "common/net/http_types.h"
#include "common/status.h"

namespace bitfleet::net {

// Decodes `target` ("/v1/jobs?status=queued") into r.path and r.query; false when it is not
// validly percent-encoded.
bool parse_target(std::string_view target, Request& r);

// Checks the lower-cased headers of a request of HTTP `version` (11 for 1.1); the error names the
// header. Beast decodes "chunked" only, so any other transfer coding is refused rather than
// passed to a handler still encoded.
Status check_request_head(const Request& r, unsigned version);

}  // namespace bitfleet::net
