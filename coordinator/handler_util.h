// Small pieces every handler uses: JSON bodies, query parameters, Idempotency-Key, JSON responses.
// Errors come back as Status with the offending parameter in `field`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "common/net/http_types.h"
#include "coordinator/router.h"
#include "coordinator/store.h"

namespace bitfleet::coordinator {

Response json_response(int status, const nlohmann::json& body);

// The request's JSON body; on error *http_status is 415 (a Content-Type other than JSON) or 400
// (not valid JSON).
Result<nlohmann::json> json_body(const Request& r, int* http_status);

// An integer query parameter in [min, max], or the fallback when absent.
Result<int64_t> int_param(const Request& r, const std::string& name, int64_t min, int64_t max, int64_t fallback);

// The Idempotency-Key header, bound to this request's method, path, query and body digest.
Result<std::optional<IdempotencyKey>> idempotency_key(const Request& r, const std::string& body_digest);

}  // namespace bitfleet::coordinator
