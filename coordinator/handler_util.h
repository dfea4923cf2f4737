// Small pieces every handler uses: JSON bodies, query parameters, Idempotency-Key, JSON responses.
// Errors come back as Status with the offending parameter in `field`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "common/net/http_types.h"
#include "common/net/json_body.h"
#include "common/net/problem.h"
#include "coordinator/router.h"
#include "coordinator/store.h"

namespace bitfleet::coordinator {

using net::json_body;      // 415 when not JSON, 400 when not valid JSON (common/net/json_body.h)
using net::json_response;

// A request body decoded into a message: the message, or the problem to answer with.
template <typename T>
class Decoded {
 public:
  explicit Decoded(T value) : value_(std::move(value)) {}
  explicit Decoded(Response problem) : problem_(std::move(problem)) {}
  explicit operator bool() const { return value_.has_value(); }
  T& operator*() { return *value_; }
  T* operator->() { return &*value_; }
  Response& problem() { return problem_; }

 private:
  std::optional<T> value_;
  Response problem_;
};

// The body of `r` through `parse` (JSON → Result<T>): 415 when it is not JSON, 400 when it is not
// valid JSON, 422 naming the field when `parse` refuses it.
//   auto m = decode<protocol::Heartbeat>(r, protocol::parse_heartbeat);
//   if (!m) return m.problem();
template <typename T, typename Parse>
Decoded<T> decode(const Request& r, Parse&& parse) {
  int status = 400;
  auto body = json_body(r, &status);
  if (!body.is_ok()) return Decoded<T>(net::problem(body.status(), r.path, status));
  Result<T> message = parse(*body);
  if (!message.is_ok()) return Decoded<T>(net::problem(message.status(), r.path, 422));
  return Decoded<T>(std::move(message).value());
}

// Pages of a list: ?limit= defaults to 20, at most 100.
inline constexpr int64_t kDefaultPage = 20, kMaxPage = 100;

// A page as the API's list object: {"object": "list", "data": [render(item)...], "has_more"}.
template <typename T, typename F>
nlohmann::json page_json(const Page<T>& page, F&& render) {
  nlohmann::json data = nlohmann::json::array();
  for (const auto& item : page.data) data.push_back(render(item));
  return {{"object", "list"}, {"data", data}, {"has_more", page.has_more}};
}

// An integer query parameter in [min, max], or the fallback when absent.
Result<int64_t> int_param(const Request& r, const std::string& name, int64_t min, int64_t max, int64_t fallback);

// The Idempotency-Key header, bound to this request's method, path, query and body digest.
Result<std::optional<IdempotencyKey>> idempotency_key(const Request& r, const std::string& body_digest);

}  // namespace bitfleet::coordinator
