// Auth: bearer tokens mapped to tenants and roles.
//
//   user    /v1 on its own tenant's files and jobs only
//   admin   /v1 on every tenant's
//   worker  /internal/v1 only (worker groups)
//   metrics GET /metrics only (Prometheus); admin tokens may scrape too
//
// Tokens come from --auth-file ({"tokens": [{"token", "tenant", "role"}]}). Without one the
// coordinator is still secure by default: at first start it writes random tokens to
// DATA_DIR/admin.token, DATA_DIR/worker.token and DATA_DIR/metrics.token (mode 0600), and reuses
// them afterwards. The Authorization scheme "Bearer" is matched case-insensitively. Tokens are
// kept and compared as SHA-256 digests.
// Thread-safety: immutable after construction.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bitfleet::coordinator {

enum class Role { kUser, kAdmin, kWorker, kMetrics };

struct Principal {
  std::string tenant;
  Role role = Role::kUser;
  std::string token_digest;  // which token (its SHA-256): the key of per-token rate limits
};

class Auth {
 public:
  static Result<Auth> from_file(const std::string& path);
  // Reads or creates DATA_DIR/{admin,worker,metrics}.token; `created` says which.
  static Result<Auth> default_tokens(const std::string& data_dir, std::string* created);

  // From an Authorization header value; nullopt when missing or unknown.
  std::optional<Principal> authenticate(std::string_view authorization) const;

 private:
  std::map<std::string, Principal> by_digest_;
};

}  // namespace bitfleet::coordinator
