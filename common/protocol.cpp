#include "common/protocol.h"

#include <limits>
#include <tuple>

#include "common/job_spec.h"
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

json optional_number(const std::optional<double>& v) { return v ? json(*v) : json(); }

// "train_loss": a number, or null / absent (none yet, or not finite).
std::optional<double> optional_loss(JsonFields& f) {
  const bool present = f.has("train_loss") && !f.raw("train_loss").is_null();
  const double loss = f.number("train_loss", {.min = -1e300, .max = 1e300}, 0.0);  // marks the field known
  return present ? std::optional(loss) : std::nullopt;
}

json with_fence(const Fence& fence, json body) {
  body["worker_group"] = fence.worker_group;
  body["attempt"] = fence.attempt;
  return body;
}

// The list at `key` (absent or null: empty, unless required; at most `max` elements), each element
// an object at "key[i]" read by `item`, then checked for unknown fields.
template <typename F>
Status each_object(JsonFields& f, std::string_view key, bool required, size_t max, F&& item) {
  const json& list = f.raw(key);
  if (f.ok() && (required || !list.is_null()) && (!list.is_array() || list.size() > max)) {
    f.fail(key, "must be a list of at most " + std::to_string(max) + " objects");
  }
  if (!f.ok() || !list.is_array()) return Status::ok();  // f.finish() reports it
  for (size_t i = 0; i < list.size(); ++i) {
    JsonFields e(list[i], std::string(key) + "[" + std::to_string(i) + "]");
    item(e);
    BITFLEET_RETURN_IF_ERROR(e.finish());
  }
  return Status::ok();
}

Fence fence_of(JsonFields& f) { return {f.string("worker_group", std::nullopt, kIdLength), f.integer("attempt", 1, kMaxInt)}; }

}  // namespace

// --- worker → coordinator ------------------------------------------------------------------------

json to_json(const Registration& r) {
  json out = {{"name", r.name},       {"backbone", r.backbone},     {"backbone_sha256", r.backbone_sha256},
              {"device", r.device},   {"slots", r.slots},           {"ranks", r.ranks},
              {"max_labels", r.max_labels}, {"max_seq_len", r.max_seq_len},
              {"dtype", r.dtype},     {"cpu", r.cpu}};
  if (!r.id.empty()) out["id"] = r.id;
  return out;
}

json to_json(const LeaseRequest& r) { return {{"free_slots", r.free_slots}}; }

json to_json(const Heartbeat& h) {
  json jobs = json::array();
  for (const auto& p : h.jobs) {
    jobs.push_back({{"id", p.job_id}, {"attempt", p.attempt}, {"step", p.step}, {"total_steps", p.total_steps},
                    {"train_loss", optional_number(p.train_loss)}});
  }
  return {{"free_slots", h.free_slots}, {"jobs", jobs}};
}

json to_json(const EventsReport& r) {
  json events = json::array();
  for (const auto& e : r.events) events.push_back({{"type", e.type}, {"data", e.data}});
  return with_fence(r.fence, {{"events", events}});
}

json to_json(const CompleteReport& r) {
  return with_fence(r.fence, {{"metrics", r.metrics},
                              {"train_loss", optional_number(r.train_loss)},
                              {"steps", r.steps},
                              {"final_metrics", r.final_metrics},
                              {"test_metrics", r.test_metrics},
                              {"best_step", r.best_step ? json(*r.best_step) : json()},
                              {"stopped_early", r.stopped_early}});
}

json to_json(const FailReport& r) { return with_fence(r.fence, {{"reason", r.reason}}); }

json to_json(const ReleaseReport& r) { return with_fence(r.fence, json::object()); }

Result<Registration> parse_registration(const json& body) {
  JsonFields f(body, "");
  Registration r;
  r.id = f.string("id", "", kIdLength, true);
  r.name = f.string("name", std::nullopt, 128);
  r.backbone = f.string("backbone", std::nullopt, 128);
  r.backbone_sha256 = f.string("backbone_sha256", "", 64, true);
  r.device = f.string("device", "cpu", 32);
  r.slots = f.integer("slots", 1, 4096);
  r.ranks = f.integer("ranks", 1, 65536, 1);
  r.max_labels = f.integer("max_labels", 1, common::kMaxLabels, common::kMaxLabels);
  r.max_seq_len = f.integer("max_seq_len", 8, 1 << 16, common::kMaxSeqLenLimit);
  // Groups from before dtypes were registered computed in bf16 on CUDA and fp32 on CPU.
  r.dtype = f.string("dtype", r.device == "cuda" ? "bf16" : "fp32", 16);
  if (f.ok() && !common::parse_dtype(r.dtype)) f.fail("dtype", "must be fp32 or bf16, got \"" + r.dtype + "\"");
  r.cpu = f.string("cpu", "", 256, true);
  BITFLEET_RETURN_IF_ERROR(f.finish());
  return r;
}

Result<LeaseRequest> parse_lease_request(const json& body) {
  JsonFields f(body, "");
  LeaseRequest r{f.integer("free_slots", 0, 4096)};
  BITFLEET_RETURN_IF_ERROR(f.finish());
  return r;
}

Result<Heartbeat> parse_heartbeat(const json& body) {
  JsonFields f(body, "");
  Heartbeat h;
  h.free_slots = f.integer("free_slots", 0, 4096);
  BITFLEET_RETURN_IF_ERROR(each_object(f, "jobs", false, 4096, [&](JsonFields& j) {
    h.jobs.push_back({j.string("id", std::nullopt, kIdLength), j.integer("attempt", 1, kMaxInt),
                      j.integer("step", 0, kMaxInt, 0), j.integer("total_steps", 0, kMaxInt, 0), optional_loss(j)});
  }));
  BITFLEET_RETURN_IF_ERROR(f.finish());
  return h;
}

Result<EventsReport> parse_events_report(const json& body) {
  JsonFields f(body, "");
  EventsReport r;
  r.fence = fence_of(f);
  BITFLEET_RETURN_IF_ERROR(each_object(f, "events", true, 1000, [&](JsonFields& e) {
    std::string type = e.string("type", std::nullopt, 32);
    const json& data = e.raw("data");
    if (e.ok() && type != "train_loss" && type != "evaluation" && type != "eval" && type != "log") {
      e.fail("type", "must be train_loss, evaluation, eval or log");
    }
    if (e.ok() && !data.is_object()) e.fail("data", "must be an object");
    r.events.push_back({std::move(type), data});
  }));
  BITFLEET_RETURN_IF_ERROR(f.finish());
  return r;
}

Result<CompleteReport> parse_complete_report(const json& body) {
  JsonFields f(body, "");
  CompleteReport r;
  r.fence = fence_of(f);
  const json& metrics = f.raw("metrics");
  r.train_loss = optional_loss(f);
  r.steps = f.integer("steps", 0, kMaxInt);
  for (const char* key : {"metrics", "final_metrics", "test_metrics"}) {
    if (f.ok() && !f.raw(key).is_null() && !f.raw(key).is_object()) f.fail(key, "must be an object");
  }
  if (!f.raw("best_step").is_null()) r.best_step = f.integer("best_step", 0, kMaxInt);
  r.stopped_early = f.boolean("stopped_early", false);
  r.final_metrics = f.raw("final_metrics");
  r.test_metrics = f.raw("test_metrics");
  BITFLEET_RETURN_IF_ERROR(f.finish());
  if (metrics.is_object()) r.metrics = metrics;
  return r;
}

Result<FailReport> parse_fail_report(const json& body) {
  JsonFields f(body, "");
  FailReport r{fence_of(f), f.string("reason", std::nullopt, 4096)};
  BITFLEET_RETURN_IF_ERROR(f.finish());
  return r;
}

Result<ReleaseReport> parse_release_report(const json& body) {
  JsonFields f(body, "");
  ReleaseReport r{fence_of(f)};
  BITFLEET_RETURN_IF_ERROR(f.finish());
  return r;
}

// --- coordinator → worker ------------------------------------------------------------------------

json to_json(const FileRef& f) {
  return {{"id", f.id}, {"filename", f.filename}, {"sha256", f.sha256}, {"bytes", f.bytes}};
}

json to_json(const LeasedJob& j) {
  return {{"id", j.id},
          {"attempt", j.attempt},
          {"request", j.request},
          {"train_file", to_json(j.train_file)},
          {"validation_file", j.validation_file ? to_json(*j.validation_file) : json()},
          {"test_file", j.test_file ? to_json(*j.test_file) : json()},
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
  const json& test = f.raw("test_file");
  const json& checkpoint = f.raw("checkpoint");
  BITFLEET_RETURN_IF_ERROR(fields_status(f));
  out.request = request;
  BITFLEET_ASSIGN_OR_RETURN(out.train_file, file_ref_from_json(train, f.path_of("train_file")));
  for (auto [key, value, ref] : {std::tuple{"validation_file", &validation, &out.validation_file},
                                 std::tuple{"test_file", &test, &out.test_file}}) {
    if (value->is_null()) continue;
    BITFLEET_ASSIGN_OR_RETURN(FileRef read, file_ref_from_json(*value, f.path_of(key)));
    *ref = std::move(read);
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
