// The OpenAPI document of bitfleet-serve's API (docs/serve-openapi.json, compiled in), served at
// GET /v1/openapi.json. Thread-safety: immutable.
#pragma once

#include <string_view>

namespace bitfleet::serve {

std::string_view openapi_document();

}  // namespace bitfleet::serve
