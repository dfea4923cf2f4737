// The OpenAPI 3.1 document of the public API: docs/openapi.json, compiled in at build time so the
// binary serves exactly the document in the tree (GET /v1/openapi.json).
#pragma once

#include <string_view>

namespace bitfleet::coordinator {

std::string_view openapi_document();

}  // namespace bitfleet::coordinator
