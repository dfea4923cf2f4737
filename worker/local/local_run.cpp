#include "worker/local/local_run.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/json_fields.h"
#include "common/log.h"
#include "worker/engine/session.h"

namespace bitfleet::local {

using engine::Metrics;
using engine::Session;
using engine::StepReport;
using engine::Trainer;
using engine::TrainJob;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct LocalJob {
  std::string name;
  int64_t start_after_step = 0;
  common::JobRequest request;
  std::shared_ptr<const text::Dataset> train, validation;
  // Outcome
  std::string status = "queued";
  std::string reason;
  Metrics eval;
  double last_loss = 0.0;
  int64_t steps = 0;
  std::chrono::steady_clock::time_point started;
  double seconds = 0.0;
};

struct Spec {
  std::string backbone;
  int64_t slots = 4;
  int64_t max_labels = 64;
  int threads = 1;
  int64_t log_every = 10;
  std::vector<LocalJob> jobs;
};

std::string resolve(const fs::path& base, const std::string& path) {
  fs::path p(path);
  return p.is_absolute() ? p.string() : (base / p).lexically_normal().string();
}

Result<Spec> read_spec(const std::string& path) {
  BITFLEET_ASSIGN_OR_RETURN(std::string text, common::read_file(path));
  BITFLEET_ASSIGN_OR_RETURN(json j, common::parse_json(text, path));
  const fs::path base = fs::path(path).parent_path();
  Spec spec;
  common::JsonFields f(j, "");
  spec.backbone = resolve(base, f.string("backbone"));
  spec.slots = f.integer("slots", 1, 1024, 4);
  spec.max_labels = f.integer("max_labels", 1, common::kMaxLabels, common::kMaxLabels);
  spec.threads = static_cast<int>(f.integer("threads", 1, 256, 1));
  spec.log_every = f.integer("log_every", 1, 1'000'000, 10);
  const json& jobs = f.raw("jobs");
  if (f.ok() && (!jobs.is_array() || jobs.empty())) f.fail("jobs", "must be a non-empty list of job requests");
  Status fields = f.finish();
  if (!fields.is_ok()) return fields.with_context(path);
  for (size_t i = 0; i < jobs.size(); ++i) {
    json entry = jobs[i];
    const std::string at = "jobs[" + std::to_string(i) + "]";
    LocalJob job;
    job.name = "job" + std::to_string(i);
    if (entry.is_object() && entry.contains("name")) {
      if (!entry["name"].is_string() || entry["name"].get<std::string>().empty()) {
        return invalid_argument(path + ": " + at + ".name: must be a non-empty string", at + ".name");
      }
      job.name = entry["name"].get<std::string>();
      entry.erase("name");
    }
    if (entry.is_object() && entry.contains("start_after_step")) {
      if (!entry["start_after_step"].is_number_integer()) {
        return invalid_argument(path + ": " + at + ".start_after_step: must be an integer", at + ".start_after_step");
      }
      job.start_after_step = entry["start_after_step"].get<int64_t>();
      entry.erase("start_after_step");
    }
    auto request = common::parse_job_request(entry, common::FileRefs::kLocalPaths, at);
    if (!request.is_ok()) return request.status().with_context(path);
    job.request = std::move(request).value();
    job.request.train_file = resolve(base, job.request.train_file);
    if (!job.request.validation_file.empty()) job.request.validation_file = resolve(base, job.request.validation_file);
    for (const auto& other : spec.jobs) {
      if (other.name == job.name) return invalid_argument(path + ": two jobs are named \"" + job.name + "\"");
    }
    spec.jobs.push_back(std::move(job));
  }
  return spec;
}

std::string format_loss(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}

json metrics_json(const Metrics& m) {
  json out = json::object();
  for (const auto& [k, v] : m) out[k] = v;
  return out;
}

}  // namespace

Status run_local(const LocalRunOptions& options, comm::Communicator& comm) {
  BITFLEET_ASSIGN_OR_RETURN(Spec spec, read_spec(options.spec_path));
  BITFLEET_ASSIGN_OR_RETURN(auto session, Session::open({.backbone_dir = spec.backbone,
                                                         .device = options.device,
                                                         .threads = options.threads > 0 ? options.threads : spec.threads,
                                                         .slots = spec.slots,
                                                         .max_labels = spec.max_labels,
                                                         .rows_per_pass = options.rows_per_pass},
                                                        comm));
  const bool leader = comm.rank() == 0;
  Trainer& trainer = session->trainer();
  const text::Tokenizer* tokenizer = session->tokenizer().get();

  // Every rank reads and tokenizes the data itself; bad data stops the run before any training.
  for (auto& job : spec.jobs) {
    BITFLEET_RETURN_IF_ERROR(trainer.check(job.request).with_context("job " + job.name));
    const auto& r = job.request;
    BITFLEET_ASSIGN_OR_RETURN(text::Dataset train, text::load_dataset(r.train_file, r.train_file, r.task, *tokenizer,
                                                                      r.hyperparameters.max_seq_len));
    job.train = std::make_shared<text::Dataset>(std::move(train));
    if (!r.validation_file.empty()) {
      BITFLEET_ASSIGN_OR_RETURN(text::Dataset val, text::load_dataset(r.validation_file, r.validation_file, r.task,
                                                                      *tokenizer, r.hyperparameters.max_seq_len));
      job.validation = std::make_shared<text::Dataset>(std::move(val));
    }
  }
  if (leader) {
    BITFLEET_RETURN_IF_ERROR(common::make_directories(options.out_dir + "/checkpoints"));
  }

  std::deque<LocalJob*> pending;
  for (auto& job : spec.jobs) pending.push_back(&job);
  std::map<int, LocalJob*> running;
  const std::string checkpoints = options.out_dir + "/checkpoints/";
  auto write_checkpoints = [&]() -> Status {
    if (!leader) return Status::ok();
    for (const auto& [slot, job] : running) {
      BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(checkpoints + job->name + ".safetensors", trainer.checkpoint(slot)));
    }
    return Status::ok();
  };

  int64_t steps = 0, examples = 0, tokens = 0;
  const auto run_start = std::chrono::steady_clock::now();
  auto window_start = run_start;
  int64_t window_steps = 0, window_examples = 0, window_tokens = 0;
  bool stopped = false;
  while (true) {
    // Admit waiting jobs into free slots (the same decisions on every rank).
    for (auto it = pending.begin(); it != pending.end();) {
      auto slot = trainer.free_slot();
      if (!slot) break;
      LocalJob* job = *it;
      if (job->start_after_step > steps) {
        ++it;
        continue;
      }
      TrainJob tj{job->name, job->request, job->train, job->validation};
      std::string saved;
      const std::string path = checkpoints + job->name + ".safetensors";
      if (options.resume && fs::exists(path)) {
        BITFLEET_ASSIGN_OR_RETURN(saved, common::read_file(path));
      }
      BITFLEET_RETURN_IF_ERROR(trainer.admit(*slot, std::move(tj), saved.empty() ? nullptr : &saved)
                                   .with_context("job " + job->name));
      job->status = "running";
      job->started = std::chrono::steady_clock::now();
      running[*slot] = job;
      it = pending.erase(it);
    }
    if (running.empty() && pending.empty()) break;
    if (running.empty()) {  // only jobs held back by start_after_step: the clock is the step count
      ++steps;
      continue;
    }

    BITFLEET_ASSIGN_OR_RETURN(StepReport report, trainer.step());
    ++steps;
    ++window_steps;
    examples += report.examples;
    tokens += report.tokens;
    window_examples += report.examples;
    window_tokens += report.tokens;
    for (const auto& r : report.slots) {
      running[r.slot]->last_loss = r.loss;
      running[r.slot]->steps = r.progress.step;
    }
    for (const auto& [slot, reason] : report.failed) {
      LocalJob* job = running[slot];
      job->status = "failed";
      job->reason = reason;
      job->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - job->started).count();
      if (leader) BITFLEET_LOG(kWarning) << "job " << job->name << " failed: " << reason;
      trainer.release(slot);
      running.erase(slot);
    }
    for (int slot : report.finished) {
      LocalJob* job = running[slot];
      BITFLEET_ASSIGN_OR_RETURN(job->eval, trainer.evaluate(slot));
      job->status = "succeeded";
      job->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - job->started).count();
      if (leader) {
        std::map<std::string, std::string> meta = {{"backbone", fs::path(spec.backbone).filename().string()},
                                                   {"metrics", metrics_json(job->eval).dump()},
                                                   {"train_loss", format_loss(job->last_loss)}};
        BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(options.out_dir + "/" + job->name + ".safetensors",
                                                           trainer.artifact(slot, meta)));
      }
      trainer.release(slot);
      running.erase(slot);
    }
    if (leader && (steps % spec.log_every == 0 || (running.empty() && pending.empty()))) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      std::string line = "step " + std::to_string(steps) + " | " + std::to_string(running.size()) + " active, " +
                         std::to_string(pending.size()) + " queued";
      char rates[128];
      std::snprintf(rates, sizeof(rates), " | %.2f steps/s | %.1f examples/s | %.0f tokens/s |", window_steps / secs,
                    window_examples / secs, window_tokens / secs);
      line += rates;
      for (const auto& r : report.slots) line += " " + r.job_id + "=" + format_loss(r.loss);
      std::fprintf(stdout, "%s\n", line.c_str());
      std::fflush(stdout);
      window_start = std::chrono::steady_clock::now();
      window_steps = window_examples = window_tokens = 0;
    }
    if (options.checkpoint_every > 0 && steps % options.checkpoint_every == 0) BITFLEET_RETURN_IF_ERROR(write_checkpoints());
    if (options.stop_after_steps > 0 && steps >= options.stop_after_steps) {
      BITFLEET_RETURN_IF_ERROR(write_checkpoints());
      for (auto& [slot, job] : running) job->status = "stopped";
      stopped = true;
      break;
    }
  }

  if (!leader) return Status::ok();
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  json out = {{"steps", steps}, {"seconds", total}, {"examples", examples}, {"tokens", tokens},
              {"examples_per_second", examples / total}, {"ranks", comm.size()}, {"stopped", stopped},
              {"jobs", json::object()}};
  for (const auto& job : spec.jobs) {
    json j = {{"status", job.status}, {"steps", job.steps}, {"train_loss", job.last_loss},
              {"eval", metrics_json(job.eval)}, {"seconds", job.seconds}};
    if (!job.reason.empty()) j["reason"] = job.reason;
    out["jobs"][job.name] = j;
  }
  return common::write_file_atomic(options.out_dir + "/metrics.json", out.dump(2));
}

}  // namespace bitfleet::local
