#include "serve/task_source.h"

#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/json_fields.h"
#include "common/log.h"
#include "common/net/sha256.h"
#include "serve/predict_request.h"

namespace bitfleet::serve {
namespace fs = std::filesystem;

namespace {

bool unavailable_status(const Status& s) { return s.code() == StatusCode::kUnavailable; }

// A coordinator answer that is not 200 as the status a caller gets.
Status refused(const net::HttpResponse& r, const std::string& what) {
  switch (r.status) {
    case 401: return Status(StatusCode::kUnauthenticated, "the coordinator does not accept this bearer token");
    case 403: return Status(StatusCode::kPermissionDenied, "this token may not read " + what + ": " + r.problem_text());
    case 404: return Status(StatusCode::kNotFound, "no " + what + " that this token can see", "task");
    default:
      if (r.status >= 500) return unavailable("the coordinator could not answer for " + what + ": " + r.problem_text());
      return Status(StatusCode::kFailedPrecondition, "the coordinator refused " + what + ": " + r.problem_text(), "task");
  }
}

Result<nlohmann::json> json_of(const net::HttpResponse& r, const std::string& what) {
  auto j = common::parse_json(r.body, "the coordinator's answer for " + what);
  if (!j.is_ok() || !j->is_object()) return unavailable("the coordinator's answer for " + what + " is not a JSON object");
  return j;
}

}  // namespace

CoordinatorSource::CoordinatorSource(CoordinatorSourceOptions options, net::Endpoint endpoint)
    : options_(std::move(options)), endpoint_(std::move(endpoint)) {}

Result<std::unique_ptr<CoordinatorSource>> CoordinatorSource::create(CoordinatorSourceOptions options) {
  BITFLEET_ASSIGN_OR_RETURN(net::Endpoint endpoint, net::parse_url(options.url));
  BITFLEET_RETURN_IF_ERROR(common::make_directories(options.artifact_dir));
  return std::unique_ptr<CoordinatorSource>(new CoordinatorSource(std::move(options), std::move(endpoint)));
}

Result<std::pair<std::string, std::string>> CoordinatorSource::ask(const std::string& token, const std::string& task) {
  net::HttpClient client(endpoint_, token, options_.timeout);
  std::string job = task;
  if (task.rfind("sweep-", 0) == 0) {
    BITFLEET_ASSIGN_OR_RETURN(net::HttpResponse r, client.request("GET", "/v1/sweeps/" + task));
    if (r.status != 200) return refused(r, "sweep " + task);
    BITFLEET_ASSIGN_OR_RETURN(nlohmann::json sweep, json_of(r, task));
    const auto& best = sweep["best"];
    if (!best.is_object() || !best["job"].is_string()) {
      return Status(StatusCode::kFailedPrecondition, "sweep " + task + " has no best variant yet (status " +
                                                         sweep.value("status", std::string("unknown")) + ")", "task");
    }
    job = best["job"].get<std::string>();
  } else if (task.rfind("job-", 0) != 0) {
    return Status(StatusCode::kNotFound, "no task \"" + task + "\": give a job id (job-…) or a sweep id (sweep-…)", "task");
  }
  BITFLEET_ASSIGN_OR_RETURN(net::HttpResponse r, client.request("GET", "/v1/jobs/" + job));
  if (r.status != 200) return refused(r, "job " + job);
  BITFLEET_ASSIGN_OR_RETURN(nlohmann::json j, json_of(r, job));
  const std::string status = j.value("status", std::string());
  const auto& artifact = j["artifact"];
  if (status != "succeeded" || !artifact.is_object() || !artifact["sha256"].is_string()) {
    return Status(StatusCode::kFailedPrecondition,
                  "job " + job + " is " + (status.empty() ? std::string("unknown") : status) +
                      ": only a succeeded job has an artifact to predict with", "task");
  }
  return std::make_pair(job, artifact["sha256"].get<std::string>());
}

Result<std::string> CoordinatorSource::resolve(const std::string& token, const std::string& task) {
  const auto now = std::chrono::steady_clock::now();
  const std::string key = net::sha256_hex(token) + " " + task;
  std::optional<std::pair<std::string, std::string>> stale;
  {
    std::lock_guard lock(mu_);
    if (auto it = answers_.find(key); it != answers_.end()) {
      if (now - it->second.at < options_.auth_ttl) {
        if (!it->second.value.is_ok()) return it->second.value.status();
        return it->second.value->first;
      }
      if (it->second.value.is_ok() && now - it->second.at < options_.stale_ttl) stale = *it->second.value;
    }
  }
  auto answer = ask(token, task);
  if (!answer.is_ok() && unavailable_status(answer.status()) && stale) {
    BITFLEET_LOG(kWarning) << "the coordinator is unreachable (" << answer.status().message()
                           << "); serving " << task << " on its last answer";
    return stale->first;
  }
  std::lock_guard lock(mu_);
  // Bounded: past 64k cached answers, the expired ones go (and all, if that is not enough).
  if (answers_.size() > 65536) {
    std::erase_if(answers_, [&](const auto& a) { return now - a.second.at >= options_.stale_ttl; });
    if (answers_.size() > 65536) answers_.clear();
  }
  const StatusCode code = answer.is_ok() ? StatusCode::kOk : answer.status().code();
  // Answers that stay true for a while are cached; "not yet" and "cannot tell" are asked again.
  if (code == StatusCode::kOk || code == StatusCode::kUnauthenticated || code == StatusCode::kNotFound ||
      code == StatusCode::kPermissionDenied) {
    answers_.insert_or_assign(key, Answer{answer, now});
  }
  if (!answer.is_ok()) return answer.status();
  sha256_[answer->first] = answer->second;
  return answer->first;
}

Result<std::string> CoordinatorSource::fetch(const std::string& key) {
  std::string sha256;
  {
    std::lock_guard lock(mu_);
    auto it = sha256_.find(key);
    if (it == sha256_.end()) return internal_error("task " + key + " was fetched before it was resolved");
    sha256 = it->second;
  }
  const std::string path = (fs::path(options_.artifact_dir) / (key + ".safetensors")).string();
  if (auto cached = common::read_file(path); cached.is_ok() && net::sha256_hex(*cached) == sha256) return cached;
  net::HttpClient client(endpoint_, options_.token, options_.timeout);
  BITFLEET_ASSIGN_OR_RETURN(net::HttpResponse r, client.download("/v1/jobs/" + key + "/artifact", path));
  if (r.status != 200) {
    return Status(r.status >= 500 ? StatusCode::kUnavailable : StatusCode::kFailedPrecondition,
                  "this server's token (--token-file) cannot download the artifact of " + key + ": " + r.problem_text());
  }
  BITFLEET_ASSIGN_OR_RETURN(std::string bytes, common::read_file(path));
  if (net::sha256_hex(bytes) != sha256) {
    ::unlink(path.c_str());  // not std::filesystem::remove: see tests/unit/engine/engine_fixture.h
    return data_loss("the artifact downloaded for " + key + " does not have the sha256 the coordinator reports (" +
                     sha256.substr(0, 12) + "…)");
  }
  return bytes;
}

DirectorySource::DirectorySource(std::string dir, std::string token)
    : dir_(std::move(dir)), token_digest_(net::sha256_hex(token)) {}

Result<std::string> DirectorySource::resolve(const std::string& token, const std::string& task) {
  if (net::sha256_hex(token) != token_digest_) {
    return Status(StatusCode::kUnauthenticated, "the bearer token is not this server's (--token-file)");
  }
  std::error_code ec;
  if (!is_task_name(task) || !fs::is_regular_file(fs::path(dir_) / (task + ".safetensors"), ec)) {
    return Status(StatusCode::kNotFound, "no artifact " + task + ".safetensors in this server's --artifact-dir", "task");
  }
  return task;
}

Result<std::string> DirectorySource::fetch(const std::string& key) {
  return common::read_file((fs::path(dir_) / (key + ".safetensors")).string());
}

}  // namespace bitfleet::serve
