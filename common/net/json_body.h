// JSON request bodies and responses, as every bitfleet HTTP API (coordinator, serve) reads and
// writes them. Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/net/http_types.h"
#include "common/status.h"

namespace bitfleet::net {

Response json_response(int status, const nlohmann::json& body);

// The media type of a Content-Type value, lower-cased, without parameters (RFC 9110, 8.3.1).
std::string media_type(std::string_view value);
// application/json, or a +json structured-syntax suffix (RFC 6838, 4.2.8).
bool is_json_media_type(const std::string& type);

// The request's JSON body; on error *http_status is 415 (a Content-Type other than JSON) or 400
// (not valid JSON).
Result<nlohmann::json> json_body(const Request& r, int* http_status);

}  // namespace bitfleet::net
