// Api: the CLI's view of the coordinator's public REST API — JSON in and out, retries, and the
// server's problem+json turned into a Status the user can read.
//
// Every call is retried (with backoff) when the coordinator cannot be reached or answers 502/503/
// 504; creations carry an Idempotency-Key chosen once per logical call, so a retry whose first try
// did land creates nothing twice. A refusal (4xx) is returned at once as a Status whose message is
// the problem's "title: detail" and whose field is the problem's field.
// Thread-safety: one Api per thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/net/http_client.h"
#include "common/status.h"

namespace bitfleet::cli {

// The CLI's exit codes (docs/user-guide.md lists them).
inline constexpr int kExitOk = 0;
inline constexpr int kExitJobsUnsuccessful = 1;  // a job it waited for failed or was cancelled
inline constexpr int kExitBadInput = 2;          // usage, local files, or the coordinator's 400/413/422
inline constexpr int kExitRefused = 3;           // 401/403, unknown id (404), wrong state (409)
inline constexpr int kExitUnavailable = 4;       // coordinator unreachable, timing out, or failing (5xx)
inline constexpr int kExitInterrupted = 130;     // Ctrl-C while watching (the jobs go on)

int exit_code_for(const Status& status);

struct ApiOptions {
  std::string url = "http://127.0.0.1:8080";
  std::string token;
  std::chrono::milliseconds timeout{60000};
  int attempts = 5;  // tries per call while the coordinator is unreachable
};

class Api {
 public:
  static Result<std::unique_ptr<Api>> connect(const ApiOptions& options);

  Result<nlohmann::json> get(const std::string& target);
  // idempotency_key: "" for calls that are safe to repeat anyway (cancel).
  Result<nlohmann::json> post(const std::string& target, const nlohmann::json& body,
                              const std::string& idempotency_key);
  Result<nlohmann::json> upload(const std::string& target, const std::string& path,
                                const std::string& idempotency_key);
  // The response body into `path` (written atomically).
  Status download(const std::string& target, const std::string& path);

  // Every item of a cursor-paginated list (GET path?query&limit=100&after=…), at most max_items.
  Result<std::vector<nlohmann::json>> list(const std::string& path, const std::string& query, size_t max_items,
                                           bool* has_more = nullptr);

 private:
  Api(const ApiOptions& options, net::Endpoint endpoint);
  template <typename Call>
  Result<net::HttpResponse> with_retries(Call&& call);

  ApiOptions options_;
  net::HttpClient client_;
};

// A fresh random key for one logical creation (128 bits, hex).
std::string new_idempotency_key();
std::string url_encode(std::string_view text);

}  // namespace bitfleet::cli
