// bitfleet-coordinator --listen HOST:PORT --data-dir DIR [--auth-file FILE] [--lease-seconds N]
//                      [--max-expiries N] [--io-threads N] [--handler-threads N] [--max-upload-mb N]
//                      [--max-connections N] [--header-timeout-seconds N]
//                      [--max-queued-jobs-per-tenant N] [--max-stored-mb-per-tenant N]
//                      [--rate-limit-per-second N] [--rate-limit-burst N] [--max-sweep-variants N]
// Parses flags, wires the service to the HTTP server, and serves until SIGTERM/SIGINT, then stops
// gracefully: no new connections, requests in flight finish.
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <iostream>
#include <optional>

#include "common/file_util.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/net/http_server.h"
#include "coordinator/service.h"

using namespace bitfleet;
using namespace bitfleet::coordinator;
using bitfleet::net::HttpServer;
using bitfleet::net::ServerOptions;

namespace {

// Raises the soft limit on open files to the hard limit; returns the limit now in force.
int64_t raise_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur == RLIM_INFINITY ? (1 << 20) : static_cast<int64_t>(limit.rlim_cur);
}

// What the flags configure: the service, the server, and the auth file if any.
struct Config {
  ServiceOptions service;
  ServerOptions server;
  std::optional<std::string> auth_file;
  int64_t max_connections = 1024;
};

// The flags, strictly: a bad value or an unknown flag is a usage error naming the flag.
Result<Config> parse_flags(int argc, char** argv) {
  common::Flags flags(argc, argv);
  Config c;
  const std::string listen = flags.string("listen", "127.0.0.1:8080");
  ServiceOptions& options = c.service;
  options.data_dir = flags.string("data-dir");
  c.auth_file = flags.optional_string("auth-file");
  options.lease_ms = flags.integer("lease-seconds", 1, 86400, 60) * 1000;
  options.max_expiries = flags.integer("max-expiries", 1, 100, 3);
  ServerOptions& server = c.server;
  server.io_threads = static_cast<int>(flags.integer("io-threads", 1, 64, 2));
  server.handler_threads = static_cast<int>(flags.integer("handler-threads", 1, 256, 4));
  server.max_upload_bytes = static_cast<uint64_t>(flags.integer("max-upload-mb", 1, 1 << 20, 1024)) << 20;
  c.max_connections = flags.integer("max-connections", 16, 1 << 20, 1024);
  options.max_queued_jobs_per_tenant = flags.integer("max-queued-jobs-per-tenant", 0, int64_t{1} << 40,
                                                     options.max_queued_jobs_per_tenant);
  options.max_stored_bytes_per_tenant =
      flags.integer("max-stored-mb-per-tenant", 0, int64_t{1} << 30, options.max_stored_bytes_per_tenant >> 20) << 20;
  options.rate_limit_per_second = static_cast<double>(flags.integer("rate-limit-per-second", 0, 1 << 20, 0));
  options.rate_limit_burst = static_cast<double>(flags.integer("rate-limit-burst", 0, 1 << 20, 0));
  server.header_timeout = std::chrono::seconds(flags.integer("header-timeout-seconds", 1, 3600, 30));
  options.max_sweep_variants = flags.integer("max-sweep-variants", 1, 10'000, options.max_sweep_variants);
  BITFLEET_RETURN_IF_ERROR(flags.finish());
  auto colon = listen.rfind(':');
  uint16_t port = 0;
  const char* port_end = listen.data() + listen.size();
  if (colon == std::string::npos || colon + 1 == listen.size() ||
      std::from_chars(listen.data() + colon + 1, port_end, port).ptr != port_end) {
    return invalid_argument("--listen must be HOST:PORT with a port in [0, 65535], got \"" + listen + "\"", "listen");
  }
  server.host = listen.substr(0, colon);
  server.port = port;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  set_log_role("coordinator");
  auto config = parse_flags(argc, argv);
  if (!config.is_ok()) {
    std::cerr << "bitfleet-coordinator: " << config.status().message() << "\n";
    return 2;
  }
  ServiceOptions& options = config->service;
  ServerOptions& server = config->server;
  // Tokens, the database and blobs hold tenants' data: readable by this user alone.
  ::umask(077);
  // Connections are capped below the descriptor limit, leaving room for SQLite, blobs and uploads.
  server.max_connections = static_cast<int>(std::min<int64_t>(config->max_connections, raise_file_limit() - 64));
  if (Status s = common::make_directories(options.data_dir); !s.is_ok()) {
    std::cerr << "bitfleet-coordinator: " << s.message() << "\n";
    return 1;
  }

  std::string created;
  auto auth = config->auth_file ? Auth::from_file(*config->auth_file) : Auth::default_tokens(options.data_dir, &created);
  if (!auth.is_ok()) {
    std::cerr << "bitfleet-coordinator: " << auth.status().message() << "\n";
    return 1;
  }
  if (!created.empty()) BITFLEET_LOG(kInfo) << "wrote new tokens (mode 0600): " << created;
  auto service = Service::create(options, std::move(auth).value());
  if (!service.is_ok()) {
    std::cerr << "bitfleet-coordinator: " << service.status().to_string() << "\n";
    return 1;
  }
  Service* svc = service->get();
  server.upload_dir = svc->upload_dir();
  server.is_upload = [svc](const std::string& m, const std::string& p) { return svc->is_upload(m, p); };
  server.handle = [svc](Request& r) { return svc->handle(r); };
  server.observe = [svc](const Request& r, int status, double seconds) { svc->observe(r, status, seconds); };

  // Block the signals in every thread; the main thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  HttpServer http(server);
  if (Status s = http.start(); !s.is_ok()) {
    std::cerr << "bitfleet-coordinator: " << s.message() << "\n";
    return 1;
  }
  svc->start_sweeper();
  BITFLEET_LOG(kInfo) << "serving on " << server.host << ":" << http.port() << ", data in " << options.data_dir;
  std::cout << "listening on " << server.host << ":" << http.port() << std::endl;

  int received = 0;
  sigwait(&signals, &received);
  BITFLEET_LOG(kInfo) << "signal " << received << ": stopping (requests in flight finish)";
  http.stop(std::chrono::seconds(10));
  svc->stop_sweeper();
  BITFLEET_LOG(kInfo) << "stopped";
  return 0;
}
