// HttpServer: HTTP/1.1 on Boost.Asio/Beast: the coordinator's API and the workers' /metrics.
//
// A listener accepts, up to max_connections at once (past the cap, and when the process runs out
// of file descriptors, it pauses accepting instead of spinning); each connection is a session
// (kept alive by shared_from_this) that waits up to idle_timeout for a request, reads its header
// within header_timeout of the first byte, then its body: JSON up to max_body_bytes into memory,
// uploads (is_upload) up to max_upload_bytes streamed straight to a temporary file. Handlers run
// on a separate thread pool — they touch SQLite and disk — never on the I/O threads. Keep-alive is
// honoured; an idle connection is closed after idle_timeout. stop() stops accepting, lets requests
// in flight finish within a grace period, and closes the rest.
// Thread-safety: start/stop from one thread; handlers run concurrently on the pool.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/net/http_types.h"

namespace bitfleet::net {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0: an ephemeral port (see HttpServer::port())
  int io_threads = 2;
  int handler_threads = 4;
  uint64_t max_body_bytes = 16u << 20;
  uint64_t max_upload_bytes = 4ull << 30;
  int max_connections = 1024;  // keep below the process's file-descriptor limit
  std::chrono::seconds header_timeout{30};
  std::chrono::seconds body_timeout{600};
  std::chrono::seconds idle_timeout{75};
  std::string upload_dir;  // where streamed bodies are written
  std::function<bool(const std::string& method, const std::string& path)> is_upload;
  std::function<Response(Request&)> handle;
  // After each response: the request, its status and the seconds it took (metrics).
  std::function<void(const Request&, int status, double seconds)> observe;
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  Status start();
  uint16_t port() const { return bound_port_; }
  void stop(std::chrono::milliseconds grace);

  struct State;  // shared with sessions

 private:
  ServerOptions options_;
  std::shared_ptr<State> state_;
  std::vector<std::thread> io_threads_;
  uint16_t bound_port_ = 0;
  bool running_ = false;
};

}  // namespace bitfleet::net
