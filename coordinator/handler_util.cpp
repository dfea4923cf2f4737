#include "coordinator/handler_util.h"

#include <charconv>
#include <string_view>

#include "common/json_fields.h"
#include "common/net/sha256.h"

namespace bitfleet::coordinator {

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
