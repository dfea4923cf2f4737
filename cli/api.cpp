#include "cli/api.h"

#include <algorithm>
#include <cctype>
#include <random>
#include <thread>

#include "common/json_fields.h"

namespace bitfleet::cli {

namespace {

bool is_transient(int http_status) { return http_status == 502 || http_status == 503 || http_status == 504; }

StatusCode code_for_http(int http_status) {
  switch (http_status) {
    case 401: return StatusCode::kUnauthenticated;
    case 403: return StatusCode::kPermissionDenied;
    case 404: return StatusCode::kNotFound;
    case 409: return StatusCode::kConflict;
    case 412: return StatusCode::kFailedPrecondition;
    case 413: return StatusCode::kResourceExhausted;
    case 429: return StatusCode::kUnavailable;
    default: return http_status >= 500 ? StatusCode::kInternal : StatusCode::kInvalidArgument;
  }
}

// A refusal: the problem's "title: detail", its field kept for callers that map it back (a
// manifest row).
Status refusal(const net::HttpResponse& response) {
  std::string field;
  auto j = common::parse_json(response.body, "the coordinator's answer");
  if (j.is_ok() && j->is_object() && j->contains("field") && (*j)["field"].is_string()) field = (*j)["field"].get<std::string>();
  StatusCode code = is_transient(response.status) ? StatusCode::kUnavailable : code_for_http(response.status);
  return Status(code, response.problem_text(), field);
}

Result<nlohmann::json> json_of(const net::HttpResponse& response) {
  if (!response.ok()) return refusal(response);
  auto j = common::parse_json(response.body, "the coordinator's answer");
  if (!j.is_ok()) return Status(StatusCode::kInternal, j.status().message());
  return j;
}

}  // namespace

int exit_code_for(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return kExitOk;
    case StatusCode::kUnauthenticated:
    case StatusCode::kPermissionDenied:
    case StatusCode::kNotFound:
    case StatusCode::kConflict:
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition: return kExitRefused;
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kInternal:
    case StatusCode::kDataLoss: return kExitUnavailable;
    case StatusCode::kCancelled: return kExitInterrupted;
    default: return kExitBadInput;
  }
}

Result<std::unique_ptr<Api>> Api::connect(const ApiOptions& options) {
  auto endpoint = net::parse_url(options.url);
  if (!endpoint.is_ok()) return Status(StatusCode::kInvalidArgument, "--url: " + endpoint.status().message());
  return std::unique_ptr<Api>(new Api(options, std::move(endpoint).value()));
}

Api::Api(const ApiOptions& options, net::Endpoint endpoint)
    : options_(options), client_(std::move(endpoint), options.token, options.timeout) {}

template <typename Call>
Result<net::HttpResponse> Api::with_retries(Call&& call) {
  auto backoff = std::chrono::milliseconds(250);
  for (int attempt = 1;; ++attempt) {
    Result<net::HttpResponse> r = call();
    const bool transient = !r.is_ok() ? r.status().code() == StatusCode::kUnavailable : is_transient(r->status);
    if (!transient || attempt >= options_.attempts) {
      if (!r.is_ok()) {
        return Status(r.status().code(), "cannot reach the coordinator at " + options_.url + ": " + r.status().message());
      }
      return r;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(4000));
  }
}

Result<nlohmann::json> Api::get(const std::string& target) {
  BITFLEET_ASSIGN_OR_RETURN(auto response, with_retries([&] { return client_.request("GET", target); }));
  return json_of(response);
}

Result<nlohmann::json> Api::post(const std::string& target, const nlohmann::json& body,
                                 const std::string& idempotency_key) {
  net::HttpClient::Headers headers = {{"Content-Type", "application/json"}};
  if (!idempotency_key.empty()) headers["Idempotency-Key"] = idempotency_key;
  const std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  BITFLEET_ASSIGN_OR_RETURN(auto response, with_retries([&] { return client_.request("POST", target, text, headers); }));
  return json_of(response);
}

Result<nlohmann::json> Api::upload(const std::string& target, const std::string& path,
                                   const std::string& idempotency_key) {
  net::HttpClient::Headers headers = {{"Content-Type", "application/octet-stream"},
                                      {"Idempotency-Key", idempotency_key}};
  BITFLEET_ASSIGN_OR_RETURN(auto response, with_retries([&] { return client_.upload("POST", target, path, headers); }));
  return json_of(response);
}

Status Api::download(const std::string& target, const std::string& path) {
  BITFLEET_ASSIGN_OR_RETURN(auto response, with_retries([&] { return client_.download(target, path); }));
  return response.ok() ? Status::ok() : refusal(response);
}

Result<std::vector<nlohmann::json>> Api::list(const std::string& path, const std::string& query, size_t max_items,
                                              bool* has_more) {
  std::vector<nlohmann::json> items;
  std::string after;
  bool more = true;
  while (more && items.size() < max_items) {
    const size_t page = std::min<size_t>(100, max_items - items.size());
    std::string target = path + "?limit=" + std::to_string(page);
    if (!query.empty()) target += "&" + query;
    if (!after.empty()) target += "&after=" + url_encode(after);
    BITFLEET_ASSIGN_OR_RETURN(nlohmann::json body, get(target));
    for (auto& item : body["data"]) items.push_back(std::move(item));
    more = body.value("has_more", false) && !items.empty();
    if (more) after = items.back()["id"].get<std::string>();
  }
  if (has_more) *has_more = more;
  return items;
}

std::string new_idempotency_key() {
  std::random_device random;  // the OS's entropy source
  static const char* const kHex = "0123456789abcdef";
  std::string key = "cli-";
  for (int i = 0; i < 32; ++i) key += kHex[random() & 15];
  return key;
}

std::string url_encode(std::string_view text) {
  static const char* const kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace bitfleet::cli
