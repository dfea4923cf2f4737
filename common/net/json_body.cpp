#include "common/net/json_body.h"

#include <cctype>

#include "common/json_fields.h"

namespace bitfleet::net {

Response json_response(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

std::string media_type(std::string_view value) {
  value = value.substr(0, value.find(';'));
  std::string out;
  for (char c : value) {
    if (c != ' ' && c != '\t') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

bool is_json_media_type(const std::string& type) {
  if (type == "application/json") return true;
  return type.rfind("application/", 0) == 0 && type.size() > 17 && type.compare(type.size() - 5, 5, "+json") == 0;
}

Result<nlohmann::json> json_body(const Request& r, int* http_status) {
  *http_status = 400;
  if (r.body.empty()) return invalid_argument("the request needs a JSON body", "body");
  const std::string type = r.header("content-type");
  if (!is_json_media_type(media_type(type))) {
    *http_status = 415;
    return invalid_argument(type.empty() ? std::string("Content-Type: application/json is required with a JSON body")
                                         : "Content-Type must be application/json, got \"" + type.substr(0, 60) + "\"",
                            "Content-Type");
  }
  auto parsed = common::parse_json(r.body, "the request body");
  if (!parsed.is_ok()) return Status(parsed.status().code(), parsed.status().message(), "body");
  return parsed;
}

}  // namespace bitfleet::net
