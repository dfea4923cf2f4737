#include "common/protocol.h"

#include <limits>

#include "common/json_fields.h"

namespace bitfleet::protocol {
namespace {

using common::JsonFields;
using nlohmann::json;

constexpr size_t kIdLength = 64;
constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();

// JsonFields without its unknown-field check: replies may grow fields.
Status fields_status(const JsonFields& f) { return f.ok() ? Status::ok() : f.error(); }

double seconds(JsonFields& f, std::string_view key) {
  return f.number(key, {.min = 0, .min_exclusive = true, .max = 86400 * 365.0}, 60.0);
}

// The member `key`, which must be an array (the error is recorded in `f` otherwise).
const json& array_member(JsonFields& f, std::string_view key) {
  const json& v = f.raw(key);
  if (f.ok() && !v.is_array()) f.fail(key, "must be an array, got " + common::json_type_name(v));
  return v;
}

Result<json> body_object(std::string_view body, std::string_view what) {
  BITFLEET_ASSIGN_OR_RETURN(json j, common::parse_json(body, what));
  if (!j.is_object()) return invalid_argument(std::string(what) + " is " + common::json_type_name(j) + ", not an object");
  return j;
}

}  // namespace

json to_json(const FileRef& f) {
  return {{"id", f.id}, {"filename", f.filename}, {"sha256", f.sha256}, {"bytes", f.bytes}};
}

json to_json(const LeasedJob& j) {
  return {{"id", j.id},
          {"attempt", j.attempt},
          {"request", j.request},
          {"train_file", to_json(j.train_file)},
          {"validation_file", j.validation_file ? to_json(*j.validation_file) : json()},
          {"checkpoint", j.checkpoint_step ? json({{"step", *j.checkpoint_step}}) : json()}};
}

json to_json(const RegistrationReply& r) {
  return {{"id", r.id}, {"lease_seconds", r.lease_seconds}, {"heartbeat_seconds", r.heartbeat_seconds}};
}

json to_json(const LeaseGrant& g) {
  json jobs = json::array();
  for (const auto& j : g.jobs) jobs.push_back(to_json(j));
  return {{"jobs", jobs}, {"lease_seconds", g.lease_seconds}};
}

json to_json(const HeartbeatReply& r) { return {{"cancel", r.cancel}, {"lease_seconds", r.lease_seconds}}; }

Result<FileRef> file_ref_from_json(const json& v, const std::string& path) {
  JsonFields f(v, path);
  FileRef out{f.string("id", std::nullopt, kIdLength), f.string("filename", std::nullopt, 255),
              f.string("sha256", std::nullopt, 64), f.integer("bytes", 0, kMaxInt)};
  BITFLEET_RETURN_IF_ERROR(fields_status(f));
  return out;
}

Result<LeasedJob> leased_job_from_json(const json& v, const std::string& path) {
  JsonFields f(v, path);
  LeasedJob out;
  out.id = f.string("id", std::nullopt, kIdLength);
  out.attempt = f.integer("attempt", 1, kMaxInt);
  const json& request = f.raw("request");
  if (f.ok() && !request.is_object()) f.fail("request", "must be an object, got " + common::json_type_name(request));
  const json& train = f.raw("train_file");
  const json& validation = f.raw("validation_file");
  const json& checkpoint = f.raw("checkpoint");
  BITFLEET_RETURN_IF_ERROR(fields_status(f));
  out.request = request;
  BITFLEET_ASSIGN_OR_RETURN(out.train_file, file_ref_from_json(train, f.path_of("train_file")));
  if (!validation.is_null()) {
    BITFLEET_ASSIGN_OR_RETURN(FileRef ref, file_ref_from_json(validation, f.path_of("validation_file")));
    out.validation_file = std::move(ref);
  }
  if (!checkpoint.is_null()) {
    JsonFields c(checkpoint, f.path_of("checkpoint"));
    out.checkpoint_step = c.integer("step", 0, kMaxInt);
    BITFLEET_RETURN_IF_ERROR(fields_status(c));
  }
  return out;
}

Result<RegistrationReply> parse_registration_reply(std::string_view body) {
  BITFLEET_ASSIGN_OR_RETURN(json j, body_object(body, "the registration reply"));
  JsonFields f(j, "");
  RegistrationReply out{f.string("id", std::nullopt, kIdLength), seconds(f, "lease_seconds"),
                        seconds(f, "heartbeat_seconds")};
  BITFLEET_RETURN_IF_ERROR(fields_status(f));
  return out;
}

Result<LeaseGrant> parse_lease_grant(std::string_view body) {
  BITFLEET_ASSIGN_OR_RETURN(json j, body_object(body, "the lease grant"));
  JsonFields f(j, "");
  LeaseGrant out;
  out.lease_seconds = seconds(f, "lease_seconds");
  const json& jobs = array_member(f, "jobs");
  BITFLEET_RETURN_IF_ERROR(fields_status(f));
  for (size_t i = 0; i < jobs.size(); ++i) {
    BITFLEET_ASSIGN_OR_RETURN(LeasedJob job, leased_job_from_json(jobs[i], "jobs[" + std::to_string(i) + "]"));
    out.jobs.push_back(std::move(job));
  }
  return out;
}

Result<HeartbeatReply> parse_heartbeat_reply(std::string_view body) {
  BITFLEET_ASSIGN_OR_RETURN(json j, body_object(body, "the heartbeat reply"));
  JsonFields f(j, "");
  HeartbeatReply out;
  out.lease_seconds = seconds(f, "lease_seconds");
  const json& cancel = array_member(f, "cancel");
  for (size_t i = 0; f.ok() && i < cancel.size(); ++i) {
    if (!cancel[i].is_string()) {
      f.fail("cancel[" + std::to_string(i) + "]", "must be a job id, got " + common::json_type_name(cancel[i]));
    } else {
      out.cancel.push_back(cancel[i].get<std::string>());
    }
  }
  BITFLEET_RETURN_IF_ERROR(fields_status(f));
  return out;
}

}  // namespace bitfleet::protocol
