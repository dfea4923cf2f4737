// TaskSource: who may predict with which task, and where its artifact comes from.
//
// CoordinatorSource (--coordinator URL): the caller's bearer token is checked by asking the
// coordinator for the task with that token — GET /v1/jobs/{id}, or GET /v1/sweeps/{id} and then its
// best variant's job — so a token is valid here exactly when it is there, and a tenant sees only its
// own tasks (the coordinator answers 404 for another tenant's). Answers are cached for
// auth_ttl (a revoked token stops working within it); while the coordinator is unreachable a
// cached positive answer is honoured for up to stale_ttl, so resident tasks keep serving. An
// artifact is downloaded with the server's own token (--token-file), checked against the sha256 the
// coordinator reports for the job, and kept in artifact_dir for the next load.
//
// DirectorySource (--artifact-dir DIR without --coordinator): tasks are DIR/NAME.safetensors, and
// the one accepted bearer token is the --token-file's.
// Thread-safety: every method from any thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/net/http_client.h"
#include "common/status.h"

namespace bitfleet::serve {

class TaskSource {
 public:
  virtual ~TaskSource() = default;
  // The key of the artifact that `task` names for the caller holding `token` (a sweep resolves to
  // its best variant's job). kUnauthenticated, kPermissionDenied, kNotFound (not the caller's, or
  // none), kFailedPrecondition (no artifact yet), kUnavailable (cannot check now).
  virtual Result<std::string> resolve(const std::string& token, const std::string& task) = 0;
  // The artifact's bytes, checked against what resolve() learnt of it.
  virtual Result<std::string> fetch(const std::string& key) = 0;
};

struct CoordinatorSourceOptions {
  std::string url;
  std::string token;         // the server's own (--token-file): artifact downloads
  std::string artifact_dir;  // downloaded artifacts, by job id
  std::chrono::seconds auth_ttl{10};
  std::chrono::seconds stale_ttl{300};
  std::chrono::milliseconds timeout{10'000};
};

class CoordinatorSource final : public TaskSource {
 public:
  static Result<std::unique_ptr<CoordinatorSource>> create(CoordinatorSourceOptions options);

  Result<std::string> resolve(const std::string& token, const std::string& task) override;
  Result<std::string> fetch(const std::string& key) override;

 private:
  CoordinatorSource(CoordinatorSourceOptions options, net::Endpoint endpoint);
  // The coordinator's answer: the job id and its artifact's sha256.
  Result<std::pair<std::string, std::string>> ask(const std::string& token, const std::string& task);

  struct Answer {
    Result<std::pair<std::string, std::string>> value;
    std::chrono::steady_clock::time_point at;
  };
  CoordinatorSourceOptions options_;
  net::Endpoint endpoint_;
  std::mutex mu_;
  std::map<std::string, Answer> answers_;      // token digest + " " + task
  std::map<std::string, std::string> sha256_;  // job id -> its artifact's sha256
};

class DirectorySource final : public TaskSource {
 public:
  DirectorySource(std::string dir, std::string token);

  Result<std::string> resolve(const std::string& token, const std::string& task) override;
  Result<std::string> fetch(const std::string& key) override;

 private:
  std::string dir_;
  std::string token_digest_;
};

}  // namespace bitfleet::serve
