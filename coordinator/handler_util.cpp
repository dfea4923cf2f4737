#include "coordinator/handler_util.h"

#include <cctype>
#include <charconv>
#include <string_view>

#include "common/json_fields.h"
#include "common/net/sha256.h"

namespace bitfleet::coordinator {

Response json_response(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

// The media type of a Content-Type value, lower-cased, without parameters (RFC 9110, 8.3.1).
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
  // application/problem+json and the like: a structured-syntax suffix (RFC 6838, 4.2.8).
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

Result<int64_t> int_param(const Request& r, const std::string& name, int64_t min, int64_t max, int64_t fallback) {
  auto it = r.query.find(name);
  if (it == r.query.end()) return fallback;
  int64_t value = 0;
  const std::string& text = it->second;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || value < min || value > max) {
    return invalid_argument("query parameter " + name + " must be an integer in [" + std::to_string(min) + ", " +
                                std::to_string(max) + "], got \"" + text.substr(0, 40) + "\"",
                            name);
  }
  return value;
}

Result<std::optional<IdempotencyKey>> idempotency_key(const Request& r, const std::string& body_digest) {
  auto it = r.headers.find("idempotency-key");
  if (it == r.headers.end()) return std::optional<IdempotencyKey>();
  const std::string& key = it->second;
  bool printable = !key.empty() && key.size() <= 255;
  for (char c : key) printable = printable && c > ' ' && c < 127;
  if (!printable) {
    return invalid_argument("Idempotency-Key must be 1 to 255 printable ASCII characters", "Idempotency-Key");
  }
  std::string canonical = r.method + " " + r.path + "?";
  for (const auto& [k, v] : r.query) canonical += k + "=" + v + "&";
  canonical += "\n" + body_digest;
  return std::optional<IdempotencyKey>(IdempotencyKey{key, net::sha256_hex(canonical)});
}

}  // namespace bitfleet::coordinator
