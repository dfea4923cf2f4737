// HttpClient: a blocking HTTP/1.1 client for bitfleet's REST API (the CLI, rank 0's agent).
//
// One kept-alive connection, reopened when the server closed it; every call has a deadline.
// Uploads and downloads stream from and to files, so large datasets and artifacts never sit in
// memory. A transport failure (refused, reset, timed out) is an Unavailable status; any HTTP
// response, error codes included, is a successful call whose HttpResponse carries the status.
// Thread-safety: one client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bitfleet::net {

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names

  bool ok() const { return status >= 200 && status < 300; }
  // "title: detail" of an RFC 9457 problem body, else the status and the body's start.
  std::string problem_text() const;
};

struct Endpoint {
  std::string host;
  std::string port;
  std::string base_path;  // "" or "/prefix"
};

// "http://host:port[/prefix]".
Result<Endpoint> parse_url(std::string_view url);

class HttpClient {
 public:
  HttpClient(Endpoint endpoint, std::string bearer_token, std::chrono::milliseconds timeout);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  using Headers = std::map<std::string, std::string>;

  Result<HttpResponse> request(std::string_view method, const std::string& target, std::string_view body = {},
                               const Headers& headers = {});
  // The body from a file (an upload), and into a file (a download; only on 2xx, atomically).
  Result<HttpResponse> upload(std::string_view method, const std::string& target, const std::string& path,
                              const Headers& headers = {});
  Result<HttpResponse> download(const std::string& target, const std::string& path);

  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  struct Connection;
  Status connect();
  // Runs `attempt` on the kept-alive connection; if the server had closed it, reconnects once and
  // runs it again (every request bitfleet's clients send is safe to repeat; POSTs carry an
  // Idempotency-Key).
  template <typename Attempt>
  Result<HttpResponse> send(Attempt&& attempt);
  std::string full_target(const std::string& target) const;

  Endpoint endpoint_;
  std::string token_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Connection> connection_;
};

}  // namespace bitfleet::net
