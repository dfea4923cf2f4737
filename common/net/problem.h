// RFC 9457 problem details: every error response bitfleet serves is application/problem+json
// with type, title, status, detail, and — when the fault is a request field or parameter — its name
// in "field" (a dotted JSON path such as "jobs[3].hyperparameters.learning_rate").
#pragma once

#include <string>

#include "common/status.h"
#include "common/net/http_types.h"

namespace bitfleet::net {

Response problem(int status, const std::string& title, const std::string& detail, const std::string& field = "",
                 const std::string& instance = "");
// A Status as a problem; `invalid_status` is the code for kInvalidArgument (400 for a malformed
// request, 422 for a well-formed body whose values are wrong).
Response problem(const Status& status, const std::string& instance, int invalid_status = 422);
int http_status(StatusCode code, int invalid_status = 422);

}  // namespace bitfleet::net
