// Protocol: every message between the coordinator and a worker group (/internal/v1), typed, each
// with one to_json and one parse that returns a Result naming the bad field:
//   worker → coordinator  Registration, LeaseRequest, Heartbeat (with ProgressReports),
//                         EventsReport, CompleteReport, FailReport, ReleaseReport (each under a
//                         Fence: the group and the attempt whose lease it claims)
//   coordinator → worker  RegistrationReply, LeaseGrant (LeasedJobs with FileRefs), HeartbeatReply
// Rank 0's agent encodes requests and decodes replies with these, the coordinator the other way
// round, and rank 0's plan broadcast to the other ranks carries the same LeasedJob encoding.
// A peer (or a proxy in front of it) that sends garbage is a Status, never an exception. Replies
// ignore unknown fields, so a newer coordinator can add some; requests refuse them (the
// coordinator answers 422 naming the field).
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
  std::optional<FileRef> test_file;
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

// --- worker → coordinator ------------------------------------------------------------------------

struct Registration {  // POST /internal/v1/workers
  std::string id;      // empty: a new group; else the id it had (it may still hold leases)
  std::string name, backbone, backbone_sha256, device = "cpu";
  std::string dtype = "fp32";  // what the group computes in (common/precision.h)
  std::string cpu;             // CpuIsa::summary() of rank 0's CPU
  int64_t slots = 1, ranks = 1, max_labels = 64, max_seq_len = 512;
};

struct LeaseRequest {  // POST /internal/v1/workers/{id}/lease
  int64_t free_slots = 0;
};

struct ProgressReport {  // one running job in a heartbeat
  std::string job_id;
  int64_t attempt = 0, step = 0, total_steps = 0;
  std::optional<double> train_loss;  // of the latest step; none before the first or when not finite
};

struct Heartbeat {  // POST /internal/v1/workers/{id}/heartbeat
  int64_t free_slots = 0;
  std::vector<ProgressReport> jobs;
};

struct Fence {  // which group, under which attempt, makes a report about a job
  std::string worker_group;
  int64_t attempt = 0;
};

struct JobEvent {
  std::string type;     // train_loss | eval | log
  nlohmann::json data;  // an object
};

struct EventsReport {  // POST /internal/v1/jobs/{id}/events
  Fence fence;
  std::vector<JobEvent> events;
};

struct CompleteReport {  // POST /internal/v1/jobs/{id}/complete
  Fence fence;
  nlohmann::json metrics = nlohmann::json::object();  // the result's: the best evaluation's, else the final
  std::optional<double> train_loss;
  int64_t steps = 0;
  nlohmann::json final_metrics;  // the last evaluation's; null without a validation set
  nlohmann::json test_metrics;   // with the result's parameters; null without a test set
  std::optional<int64_t> best_step;
  bool stopped_early = false;
};

struct FailReport {  // POST /internal/v1/jobs/{id}/fail
  Fence fence;
  std::string reason;
};

struct ReleaseReport {  // POST /internal/v1/jobs/{id}/release
  Fence fence;
};

nlohmann::json to_json(const Registration& r);
nlohmann::json to_json(const LeaseRequest& r);
nlohmann::json to_json(const Heartbeat& h);
nlohmann::json to_json(const EventsReport& r);
nlohmann::json to_json(const CompleteReport& r);
nlohmann::json to_json(const FailReport& r);
nlohmann::json to_json(const ReleaseReport& r);

// From a request body already parsed as JSON (the coordinator answers a syntax error with 400 and
// these errors, which name the field, with 422).
Result<Registration> parse_registration(const nlohmann::json& body);
Result<LeaseRequest> parse_lease_request(const nlohmann::json& body);
Result<Heartbeat> parse_heartbeat(const nlohmann::json& body);
Result<EventsReport> parse_events_report(const nlohmann::json& body);
Result<CompleteReport> parse_complete_report(const nlohmann::json& body);
Result<FailReport> parse_fail_report(const nlohmann::json& body);
Result<ReleaseReport> parse_release_report(const nlohmann::json& body);

// --- coordinator → worker ------------------------------------------------------------------------

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
