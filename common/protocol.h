// Protocol: the coordinator's answers to a worker group (/internal/v1) as typed messages — the
// registration reply, the lease grant (each leased job with its file references and checkpoint),
// the heartbeat reply — each with one to_json and one parse that returns a Result naming the bad
// field. The coordinator encodes with these, rank 0's agent decodes with them, and rank 0's plan
// broadcast to the other ranks carries the same LeasedJob encoding: one place for the format.
// A coordinator (or a proxy in front of it) that answers garbage is a Status, never an exception.
// Unknown fields are ignored, so a newer coordinator can add some.
// The requests a worker sends are still validated field by field in coordinator/internal_api.cpp.
// Thread-safety: values and free functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace bitfleet::protocol {

// A dataset a leased job reads, fetched by id and checked by sha256.
struct FileRef {
  std::string id, filename, sha256;
  int64_t bytes = 0;
};

struct LeasedJob {
  std::string id;
  int64_t attempt = 0;      // the lease's fencing token
  nlohmann::json request;   // the job request, canonical (common::to_json(JobRequest)); an object
  FileRef train_file;
  std::optional<FileRef> validation_file;
  std::optional<int64_t> checkpoint_step;  // resume from the coordinator's checkpoint
};

struct RegistrationReply {  // POST /internal/v1/workers → 201
  std::string id;
  double lease_seconds = 60, heartbeat_seconds = 20;
};

struct LeaseGrant {  // POST /internal/v1/workers/{id}/lease → 200
  std::vector<LeasedJob> jobs;
  double lease_seconds = 60;
};

struct HeartbeatReply {  // POST /internal/v1/workers/{id}/heartbeat → 200
  std::vector<std::string> cancel;  // jobs the group must drop (cancelled, or leased to another attempt)
  double lease_seconds = 60;
};

nlohmann::json to_json(const FileRef& f);
nlohmann::json to_json(const LeasedJob& j);
nlohmann::json to_json(const RegistrationReply& r);
nlohmann::json to_json(const LeaseGrant& g);
nlohmann::json to_json(const HeartbeatReply& r);

// From a JSON value at `path` (for messages: "jobs[2].train_file").
Result<FileRef> file_ref_from_json(const nlohmann::json& v, const std::string& path);
Result<LeasedJob> leased_job_from_json(const nlohmann::json& v, const std::string& path);

// From a whole response body.
Result<RegistrationReply> parse_registration_reply(std::string_view body);
Result<LeaseGrant> parse_lease_grant(std::string_view body);
Result<HeartbeatReply> parse_heartbeat_reply(std::string_view body);

}  // namespace bitfleet::protocol
