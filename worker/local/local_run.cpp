#include "worker/local/local_run.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/json_fields.h"
#include "common/log.h"
#include "worker/engine/session.h"
#include "worker/engine/slot_loop.h"

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
  std::shared_ptr<const text::Dataset> train, validation, test;
  // Outcome
  std::string status = "queued";
  std::string reason;
  engine::JobOutcome outcome;
  json evaluations = json::array();
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
      // The name is the artifact's and checkpoint's file name in OUT: nothing that leaves OUT.
      const std::string name = entry["name"].is_string() ? entry["name"].get<std::string>() : "";
      if (!common::is_plain_name(name) || name[0] == '.') {
        return invalid_argument(path + ": " + at +
                                    ".name: must be 1 to 128 characters of letters, digits, '.', '_' or '-', "
                                    "not starting with '.'",
                                at + ".name");
      }
      job.name = name;
      entry.erase("name");
    }
    if (entry.is_object() && entry.contains("start_after_step")) {
      if (!entry["start_after_step"].is_number_integer() || entry["start_after_step"].get<int64_t>() < 0) {
        return invalid_argument(path + ": " + at + ".start_after_step: must be an integer >= 0",
                                at + ".start_after_step");
      }
      job.start_after_step = entry["start_after_step"].get<int64_t>();
      entry.erase("start_after_step");
    }
    // The spec names the backbone once; a job may repeat a name for it (the artifact records the
    // directory's), and need not.
    if (entry.is_object() && !entry.contains("backbone")) entry["backbone"] = "local";
    auto request = common::parse_job_request(entry, common::FileRefs::kLocalPaths, at);
    if (!request.is_ok()) return request.status().with_context(path);
    job.request = std::move(request).value();
    job.request.train_file = resolve(base, job.request.train_file);
    for (std::string* file : {&job.request.validation_file, &job.request.test_file}) {
      if (!file->empty()) *file = resolve(base, *file);
    }
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

// One run: the spec's jobs through the session's slots, as the slot loop's driver. Every rank
// runs it with the same decisions (the spec and the step reports are the same everywhere); rank 0
// writes the files.
class LocalRun final : public engine::SlotDriver {
 public:
  LocalRun(const LocalRunOptions& options, Spec spec, Session& session, comm::Communicator& comm)
      : options_(options), spec_(std::move(spec)), trainer_(session.trainer()), tokenizer_(*session.tokenizer()),
        dtype_(session.dtype()), comm_(comm), leader_(comm.rank() == 0),
        checkpoints_(options.out_dir + "/checkpoints/") {}

  Status run() {
    BITFLEET_RETURN_IF_ERROR(load_data());
    for (auto& job : spec_.jobs) pending_.push_back(&job);
    run_start_ = window_start_ = std::chrono::steady_clock::now();
    BITFLEET_RETURN_IF_ERROR(engine::run_slot_loop(trainer_, *this));
    BITFLEET_RETURN_IF_ERROR(error_);
    return leader_ ? write_metrics() : Status::ok();
  }

  // After the last step's results: its log line, checkpoints, --stop-after-steps; then waiting
  // jobs into free slots (from their checkpoints with --resume).
  Result<engine::Turn> next_turn(const Trainer& trainer) override {
    engine::Turn turn;
    BITFLEET_RETURN_IF_ERROR(error_);
    if (last_report_) {
      log_progress(*last_report_);
      last_report_.reset();
      if (options_.checkpoint_every > 0 && steps_ % options_.checkpoint_every == 0) {
        BITFLEET_RETURN_IF_ERROR(write_checkpoints());
      }
      if (options_.stop_after_steps > 0 && steps_ >= options_.stop_after_steps) {
        BITFLEET_RETURN_IF_ERROR(write_checkpoints());
        for (auto& [slot, job] : running_) job->status = "stopped";
        stopped_ = true;
        turn.stop = true;
        return turn;
      }
    }
    std::vector<int> free = trainer.free_slots();
    for (auto it = pending_.begin(); it != pending_.end() && turn.admit.size() < free.size();) {
      LocalJob* job = *it;
      if (job->start_after_step > steps_) {
        ++it;
        continue;
      }
      engine::Admission a{free[turn.admit.size()], {job->name, job->request, job->train, job->validation, job->test}, {}};
      const std::string path = checkpoints_ + job->name + ".safetensors";
      if (options_.resume && fs::exists(path)) {
        BITFLEET_ASSIGN_OR_RETURN(a.checkpoint, common::read_file(path));
      }
      admitting_[a.slot] = job;
      turn.admit.push_back(std::move(a));
      it = pending_.erase(it);
    }
    if (running_.empty() && turn.admit.empty()) {
      // Nothing to train: done, or only jobs held back by start_after_step (the clock is the step count).
      if (pending_.empty()) {
        turn.stop = true;
      } else {
        ++steps_;
      }
    }
    return turn;
  }

  void admitted(const engine::Admission& admission, const Status& outcome) override {
    LocalJob* job = admitting_[admission.slot];
    if (!outcome.is_ok()) {
      if (error_.is_ok()) error_ = outcome.with_context("job " + job->name);
      return;
    }
    job->status = "running";
    job->started = std::chrono::steady_clock::now();
    running_[admission.slot] = job;
  }

  Status stepped(const StepReport& report) override {
    count(report);
    last_report_ = report;
    return Status::ok();
  }

  void failed(int slot, const std::string& reason) override {
    LocalJob* job = running_[slot];
    job->status = "failed";
    job->reason = reason;
    job->seconds = seconds_since(job->started);
    if (leader_) BITFLEET_LOG(kWarning) << "job " << job->name << " failed: " << reason;
    running_.erase(slot);
  }

  Status evaluated(int slot, const engine::Evaluation& evaluation) override {
    running_[slot]->evaluations.push_back(engine::evaluation_json(evaluation, trainer_.best(slot)));
    return Status::ok();
  }

  Status finished(int slot, const engine::JobOutcome& outcome) override {
    LocalJob* job = running_[slot];
    job->outcome = outcome;
    job->status = "succeeded";
    job->seconds = seconds_since(job->started);
    if (leader_) {
      std::map<std::string, std::string> meta = engine::outcome_metadata(outcome);
      meta.insert({{"backbone", fs::path(spec_.backbone).filename().string()}, {"train_loss", format_loss(job->last_loss)}});
      BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(options_.out_dir + "/" + job->name + ".safetensors",
                                                         trainer_.artifact(slot, meta)));
    }
    running_.erase(slot);
    return Status::ok();
  }

 private:
  Status load_job_data(LocalJob& job) {
    BITFLEET_RETURN_IF_ERROR(trainer_.check(job.request));
    const auto& r = job.request;
    auto load = [&](const std::string& file) {
      return text::load_dataset(file, file, r.task, tokenizer_, r.hyperparameters.max_seq_len);
    };
    BITFLEET_ASSIGN_OR_RETURN(text::Dataset train, load(r.train_file));
    job.train = std::make_shared<text::Dataset>(std::move(train));
    for (auto [file, data] : {std::pair{&r.validation_file, &job.validation}, {&r.test_file, &job.test}}) {
      if (file->empty()) continue;
      BITFLEET_ASSIGN_OR_RETURN(text::Dataset loaded, load(*file));
      *data = std::make_shared<text::Dataset>(std::move(loaded));
    }
    return Status::ok();
  }

  // Every rank reads and tokenizes the data itself; bad data stops the run before any training.
  Status load_data() {
    for (auto& job : spec_.jobs) BITFLEET_RETURN_IF_ERROR(load_job_data(job).with_context("job " + job.name));
    const bool checkpointing = options_.checkpoint_every > 0 || options_.stop_after_steps > 0;
    return leader_ ? common::make_directories(checkpointing ? checkpoints_ : options_.out_dir) : Status::ok();
  }

  void count(const StepReport& report) {
    ++steps_;
    ++window_steps_;
    examples_ += report.examples;
    tokens_ += report.tokens;
    window_examples_ += report.examples;
    window_tokens_ += report.tokens;
    for (const auto& r : report.slots) {
      running_[r.slot]->last_loss = r.loss;
      running_[r.slot]->steps = r.progress.step;
    }
  }

  double seconds_since(std::chrono::steady_clock::time_point t) const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }

  void log_progress(const StepReport& report) {
    if (!leader_ || (steps_ % spec_.log_every != 0 && !(running_.empty() && pending_.empty()))) return;
    const double secs = seconds_since(window_start_);
    std::string line = "step " + std::to_string(steps_) + " | " + std::to_string(running_.size()) + " active, " +
                       std::to_string(pending_.size()) + " queued";
    char rates[128];
    std::snprintf(rates, sizeof(rates), " | %.2f steps/s | %.1f examples/s | %.0f tokens/s |", window_steps_ / secs,
                  window_examples_ / secs, window_tokens_ / secs);
    line += rates;
    for (const auto& r : report.slots) line += " " + r.job_id + "=" + format_loss(r.loss);
    std::fprintf(stdout, "%s\n", line.c_str());
    std::fflush(stdout);
    window_start_ = std::chrono::steady_clock::now();
    window_steps_ = window_examples_ = window_tokens_ = 0;
  }

  Status write_checkpoints() {
    if (!leader_) return Status::ok();
    for (const auto& [slot, job] : running_) {
      BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(checkpoints_ + job->name + ".safetensors", trainer_.checkpoint(slot)));
    }
    return Status::ok();
  }

  Status write_metrics() const {
    const double total = seconds_since(run_start_);
    json out = {{"steps", steps_}, {"seconds", total}, {"examples", examples_}, {"tokens", tokens_},
                {"examples_per_second", examples_ / total}, {"ranks", comm_.size()}, {"stopped", stopped_},
                {"dtype", common::dtype_name(dtype_)}, {"cpu", common::detect_cpu_isa().summary()},
                {"jobs", json::object()}};
    for (const auto& job : spec_.jobs) {
      const auto& o = job.outcome;
      json j = {{"status", job.status},
                {"steps", job.steps},
                {"train_loss", job.last_loss},
                {"eval", engine::metrics_json(o.metrics())},
                {"final_eval", engine::metrics_json(o.final_metrics)},
                {"test", engine::metrics_json(o.test_metrics)},
                {"best", o.best ? json({{"step", o.best->step}, {"epoch", o.best->epoch},
                                        {"metrics", engine::metrics_json(o.best->metrics)}})
                                : json()},
                {"stopped_early", o.stopped_early},
                {"evaluations", job.evaluations},
                {"seconds", job.seconds}};
      if (!job.reason.empty()) j["reason"] = job.reason;
      out["jobs"][job.name] = j;
    }
    return common::write_file_atomic(options_.out_dir + "/metrics.json", out.dump(2));
  }

  const LocalRunOptions& options_;
  Spec spec_;
  Trainer& trainer_;
  const text::Tokenizer& tokenizer_;
  const common::Dtype dtype_;
  comm::Communicator& comm_;
  const bool leader_;
  const std::string checkpoints_;
  std::deque<LocalJob*> pending_;
  std::map<int, LocalJob*> running_;
  std::map<int, LocalJob*> admitting_;  // the last turn's admissions, by slot
  std::optional<StepReport> last_report_;
  Status error_;  // an admission that failed: the run stops at the next turn
  int64_t steps_ = 0, examples_ = 0, tokens_ = 0;
  int64_t window_steps_ = 0, window_examples_ = 0, window_tokens_ = 0;
  std::chrono::steady_clock::time_point run_start_, window_start_;
  bool stopped_ = false;
};

}  // namespace

Status run_local(const LocalRunOptions& options, comm::Communicator& comm) {
  BITFLEET_ASSIGN_OR_RETURN(Spec spec, read_spec(options.spec_path));
  BITFLEET_ASSIGN_OR_RETURN(auto session, Session::open({.backbone_dir = spec.backbone,
                                                         .device = options.device,
                                                         .dtype = options.dtype,
                                                         .threads = options.threads > 0 ? options.threads : spec.threads,
                                                         .slots = spec.slots,
                                                         .max_labels = spec.max_labels,
                                                         .rows_per_pass = options.rows_per_pass},
                                                        comm));
  return LocalRun(options, std::move(spec), *session, comm).run();
}

}  // namespace bitfleet::local
