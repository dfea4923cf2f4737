#include "worker/group_runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>
#if BITFLEET_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "common/json_fields.h"
#include "common/log.h"
#include "common/protocol.h"
#include "common/net/sha256.h"
#include "worker/agent/agent.h"
#include "worker/agent/file_cache.h"
#include "worker/engine/session.h"
#include "worker/engine/slot_loop.h"
#include "worker/worker_metrics.h"

namespace bitfleet::worker {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// What every rank does at one step boundary; rank 0 decides it.
struct Plan {
  bool stop = false;
  std::vector<int> drop;
  std::vector<std::pair<int, agent::LeasedJob>> admit;
};

// The plan as rank 0 broadcasts it; each admitted job in the lease grant's own encoding.
std::string encode(const Plan& p) {
  json admit = json::array();
  for (const auto& [slot, job] : p.admit) admit.push_back({{"slot", slot}, {"job", protocol::to_json(job)}});
  return json({{"stop", p.stop}, {"drop", p.drop}, {"admit", admit}}).dump();
}

// The other ranks' side. The bytes are rank 0's own encode(): a failure is a bug, reported.
Result<Plan> decode(const std::string& bytes) {
  BITFLEET_ASSIGN_OR_RETURN(json j, common::parse_json(bytes, "the step plan"));
  Plan p;
  if (!j.is_object() || !j["stop"].is_boolean() || !j["drop"].is_array() || !j["admit"].is_array()) {
    return internal_error("the step plan is malformed");
  }
  p.stop = j["stop"].get<bool>();
  for (const auto& slot : j["drop"]) {
    if (!slot.is_number_integer()) return internal_error("the step plan's drop list is malformed");
    p.drop.push_back(slot.get<int>());
  }
  for (const auto& a : j["admit"]) {
    if (!a.is_object() || !a["slot"].is_number_integer()) return internal_error("the step plan's admit list is malformed");
    BITFLEET_ASSIGN_OR_RETURN(agent::LeasedJob job, protocol::leased_job_from_json(a["job"], "admit.job"));
    p.admit.emplace_back(a["slot"].get<int>(), std::move(job));
  }
  return p;
}

// A job's data made ready on this rank; `failure` 0 when ready, 1 when it should be retried
// elsewhere (a transfer failed), kPermanent when it can never run (bad data, unsupported task).
struct Prepared {
  engine::TrainJob job;
  std::string checkpoint;
  int failure = 0;
  std::string reason;
};
constexpr int kPermanent = 1000;

double device_memory(const c10::Device& device) {
#if BITFLEET_WITH_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<double>(stats.allocated_bytes[0].current);
  }
#endif
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

// The slot loop's driver for a group joined to the coordinator: turns come from rank 0's agent
// (broadcast as a Plan), results go back through it.
class GroupRunner final : public engine::SlotDriver {
 public:
  GroupRunner(const GroupOptions& options, comm::Communicator& comm, const std::atomic<bool>& stop)
      : options_(options), comm_(comm), stop_(stop), leader_(comm.rank() == 0), cache_(options.cache_dir) {}

  int run();

  Result<engine::Turn> next_turn(const engine::Trainer& trainer) override;
  void admitted(const engine::Admission& admission, const Status& outcome) override;
  Status stepped(const engine::StepReport& report) override;
  Status evaluated(int slot, const engine::Evaluation& evaluation) override;
  Status finished(int slot, const engine::JobOutcome& outcome) override;
  void failed(int slot, const std::string& reason) override;

 private:
  Status setup();
  Plan make_plan();
  Result<std::vector<engine::Admission>> prepare_all(const Plan& plan);
  Prepared prepare(const agent::LeasedJob& leased);
  void give_back(const agent::LeasedJob& leased, bool permanent, const std::string& reason);
  void shutdown();
  void update_agent();

  struct SlotInfo {
    std::string job_id;
    int64_t attempt = 0;
    Clock::time_point last_checkpoint;
    int64_t checkpoint_step = 0;
    double last_loss = 0;
  };

  GroupOptions options_;
  comm::Communicator& comm_;
  const std::atomic<bool>& stop_;
  bool leader_;
  agent::FileCache cache_;
  std::unique_ptr<net::HttpClient> client_;
  std::unique_ptr<engine::Session> session_;
  engine::Trainer* trainer_ = nullptr;  // the session's
  std::unique_ptr<agent::Agent> agent_;
  std::unique_ptr<WorkerMetrics> metrics_;
  std::map<int, SlotInfo> slots_;  // rank 0's bookkeeping of the jobs it reports for
  std::map<int, agent::LeasedJob> admitting_;  // this turn's admissions, by slot
  std::string backbone_sha256_;
};

Status GroupRunner::setup() {
  BITFLEET_RETURN_IF_ERROR(cache_.init());
  BITFLEET_ASSIGN_OR_RETURN(net::Endpoint endpoint, net::parse_url(options_.coordinator_url));
  client_ = std::make_unique<net::HttpClient>(endpoint, options_.token, std::chrono::seconds(300));
  BITFLEET_ASSIGN_OR_RETURN(session_, engine::Session::open(options_.session, comm_));
  trainer_ = &session_->trainer();
  BITFLEET_ASSIGN_OR_RETURN(metrics_, WorkerMetrics::create(options_.metrics_port, comm_.rank(),
                                                            options_.backbone_name, options_.session.device,
                                                            std::string(common::dtype_name(session_->dtype()))));
  // Every rank is ready — its backbone loaded, its /metrics listening — before rank 0 registers the
  // group: a registered group's ranks can all be scraped (the Slurm script's targets name them all).
  std::string ready = "ready";
  BITFLEET_RETURN_IF_ERROR(comm_.broadcast(ready));
  if (leader_) {
    backbone_sha256_ = net::weights_sha256(options_.session.backbone_dir);
    agent::AgentOptions a;
    a.coordinator_url = options_.coordinator_url;
    a.token = options_.token;
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    a.name = std::string(host) + ":" + std::to_string(::getpid());
    a.backbone = options_.backbone_name;
    a.backbone_sha256 = backbone_sha256_;
    a.device = options_.session.device;
    a.dtype = common::dtype_name(session_->dtype());
    a.cpu = common::detect_cpu_isa().summary();
    a.slots = options_.session.slots;
    a.ranks = comm_.size();
    a.max_labels = options_.session.max_labels;
    a.max_seq_len = session_->backbone().config().max_sequence_length();
    agent_ = std::make_unique<agent::Agent>(a);
    BITFLEET_RETURN_IF_ERROR(agent_->start());
  }
  return Status::ok();
}

Plan GroupRunner::make_plan() {
  Plan plan;
  plan.stop = stop_.load();
  if (plan.stop) agent_->stop_leasing();
  if (trainer_->active_count() == 0 && !plan.stop) agent_->wait_for_work(std::chrono::milliseconds(200));
  for (const auto& id : agent_->take_dropped()) {
    for (const auto& [slot, info] : slots_) {
      if (info.job_id == id) plan.drop.push_back(slot);
    }
  }
  std::vector<int> free = trainer_->free_slots();
  free.insert(free.end(), plan.drop.begin(), plan.drop.end());
  std::sort(free.begin(), free.end());
  for (auto& job : agent_->take_leased()) {
    if (free.empty() || plan.stop) {  // no room after all, or leaving: give it back
      agent_->release(job.id, job.attempt);
      continue;
    }
    plan.admit.emplace_back(free.front(), std::move(job));
    free.erase(free.begin());
  }
  return plan;
}

Prepared GroupRunner::prepare(const agent::LeasedJob& leased) {
  Prepared p;
  auto request = common::parse_job_request(leased.request, common::FileRefs::kFileIds);
  if (!request.is_ok()) return {{}, {}, kPermanent, "unreadable request: " + request.status().message()};
  if (Status ok = trainer_->check(*request); !ok.is_ok()) {
    return {{}, {}, kPermanent, "this worker group cannot run it: " + ok.message()};
  }
  const auto& r = *request;
  auto load = [&](const agent::FileRef& f, std::shared_ptr<const text::Dataset>& out) -> Prepared {
    auto path = cache_.fetch(*client_, "/internal/v1/files/" + f.id + "/content", f.sha256);
    if (!path.is_ok()) return {{}, {}, 1, path.status().message()};
    auto data = text::load_dataset(*path, f.filename, r.task, *session_->tokenizer(), r.hyperparameters.max_seq_len);
    if (!data.is_ok()) return {{}, {}, kPermanent, data.status().message()};
    out = std::make_shared<text::Dataset>(std::move(data).value());
    return {};
  };
  p.job.id = leased.id;
  p.job.request = r;
  if (Prepared failed = load(leased.train_file, p.job.train); failed.failure) return failed;
  if (leased.validation_file) {
    if (Prepared failed = load(*leased.validation_file, p.job.validation); failed.failure) return failed;
  }
  if (leased.test_file) {
    if (Prepared failed = load(*leased.test_file, p.job.test); failed.failure) return failed;
  }
  if (leased.checkpoint_step) {
    auto ckpt = client_->request("GET", "/internal/v1/jobs/" + leased.id + "/checkpoint");
    if (!ckpt.is_ok() || !ckpt->ok()) {
      return {{}, {}, 1, "fetching the checkpoint: " + (ckpt.is_ok() ? ckpt->problem_text() : ckpt.status().message())};
    }
    p.checkpoint = std::move(ckpt->body);
  }
  return p;
}

// Every rank prepares every admission of the plan; an all-reduce of the failure flags makes every
// rank agree which ones go ahead. Rank 0 fails or releases the others.
Result<std::vector<engine::Admission>> GroupRunner::prepare_all(const Plan& plan) {
  std::vector<Prepared> prepared;
  std::vector<float> failures;
  for (const auto& [slot, job] : plan.admit) {
    prepared.push_back(prepare(job));
    failures.push_back(static_cast<float>(prepared.back().failure));
  }
  if (!failures.empty()) BITFLEET_RETURN_IF_ERROR(comm_.all_reduce_sum(failures.data(), failures.size(), nullptr));
  std::vector<engine::Admission> ready;
  admitting_.clear();
  for (size_t i = 0; i < plan.admit.size(); ++i) {
    const auto& [slot, leased] = plan.admit[i];
    Prepared& p = prepared[i];
    if (failures[i] == 0) {
      ready.push_back({slot, std::move(p.job), std::move(p.checkpoint)});
      admitting_[slot] = leased;
    } else if (leader_) {
      give_back(leased, failures[i] >= kPermanent, !p.reason.empty() ? p.reason : "another rank could not load it");
    }
  }
  return ready;
}

void GroupRunner::give_back(const agent::LeasedJob& leased, bool permanent, const std::string& reason) {
  BITFLEET_LOG(kWarning) << leased.id << ": " << (permanent ? "failed: " : "released: ") << reason;
  if (permanent) {
    agent_->fail(leased.id, leased.attempt, reason);
  } else {
    agent_->release(leased.id, leased.attempt);
  }
  metrics_->job_finished(permanent ? "failed" : "released");
}

Result<engine::Turn> GroupRunner::next_turn(const engine::Trainer& trainer) {
  metrics_->active_slots(trainer.active_count());
  if (leader_) update_agent();
  std::string bytes;
  if (leader_) bytes = encode(make_plan());
  BITFLEET_RETURN_IF_ERROR(comm_.broadcast(bytes));
  BITFLEET_ASSIGN_OR_RETURN(Plan plan, decode(bytes));
  engine::Turn turn;
  turn.stop = plan.stop;
  turn.drop = plan.drop;
  for (int slot : plan.drop) {
    if (!leader_) continue;
    BITFLEET_LOG(kInfo) << "dropping " << slots_[slot].job_id << ": cancelled or leased elsewhere";
    metrics_->job_finished("dropped");
    slots_.erase(slot);
  }
  BITFLEET_ASSIGN_OR_RETURN(turn.admit, prepare_all(plan));
  return turn;
}

void GroupRunner::admitted(const engine::Admission& admission, const Status& outcome) {
  if (!leader_) return;
  const agent::LeasedJob& leased = admitting_.at(admission.slot);
  if (!outcome.is_ok()) {
    give_back(leased, true, outcome.message());
    return;
  }
  slots_[admission.slot] = {leased.id, leased.attempt, Clock::now(), leased.checkpoint_step.value_or(0), 0.0};
  BITFLEET_LOG(kInfo) << "slot " << admission.slot << ": " << leased.id << " (attempt " << leased.attempt << ")"
                      << (leased.checkpoint_step ? " resuming from step " + std::to_string(*leased.checkpoint_step) : "");
}

Status GroupRunner::evaluated(int slot, const engine::Evaluation& evaluation) {
  metrics_->evaluation(evaluation.seconds);
  if (!leader_) return Status::ok();
  const SlotInfo& info = slots_[slot];
  agent_->send_events(info.job_id, info.attempt, {{"evaluation", engine::evaluation_json(evaluation, trainer_->best(slot))}});
  return Status::ok();
}

Status GroupRunner::finished(int slot, const engine::JobOutcome& outcome) {
  if (!leader_) return Status::ok();
  SlotInfo& info = slots_[slot];
  protocol::CompleteReport result;
  result.metrics = engine::metrics_json(outcome.metrics());
  result.train_loss = info.last_loss;
  result.steps = trainer_->progress(slot).step;
  if (!outcome.final_metrics.empty()) result.final_metrics = engine::metrics_json(outcome.final_metrics);
  if (!outcome.test_metrics.empty()) result.test_metrics = engine::metrics_json(outcome.test_metrics);
  if (outcome.best) result.best_step = outcome.best->step;
  result.stopped_early = outcome.stopped_early;
  if (!result.metrics.empty()) agent_->send_events(info.job_id, info.attempt, {{"eval", result.metrics}});
  std::map<std::string, std::string> meta = engine::outcome_metadata(outcome);
  meta.insert({{"backbone", options_.backbone_name},
               {"backbone_sha256", backbone_sha256_},
               {"train_loss", std::to_string(info.last_loss)}});
  BITFLEET_LOG(kInfo) << info.job_id << (outcome.stopped_early ? " stopped early" : " finished") << " after "
                      << result.steps << " steps " << result.metrics.dump()
                      << (outcome.best ? " (best: step " + std::to_string(outcome.best->step) + ")" : "");
  agent_->complete(info.job_id, info.attempt, trainer_->artifact(slot, meta), std::move(result));
  metrics_->job_finished(outcome.stopped_early ? "stopped_early" : "succeeded");
  slots_.erase(slot);
  return Status::ok();
}

void GroupRunner::failed(int slot, const std::string& reason) {
  if (!leader_) return;
  SlotInfo& info = slots_[slot];
  BITFLEET_LOG(kWarning) << info.job_id << " failed: " << reason;
  agent_->fail(info.job_id, info.attempt, reason);
  metrics_->job_finished("failed");
  slots_.erase(slot);
}

Status GroupRunner::stepped(const engine::StepReport& report) {
  metrics_->step(report.seconds, report.examples, report.tokens, report.allreduce_seconds, report.allreduce_bytes);
  metrics_->device_memory(device_memory(session_->device()));
  if (!leader_) return Status::ok();
  const auto now = Clock::now();
  for (const auto& r : report.slots) {
    SlotInfo& info = slots_[r.slot];
    info.last_loss = r.loss;
    if (r.progress.step % options_.events_every_steps == 0) {
      agent_->send_events(info.job_id, info.attempt,
                          {{"train_loss", {{"step", r.progress.step}, {"loss", r.loss},
                                           {"learning_rate", r.learning_rate}, {"epoch", r.progress.epoch}}}});
    }
    const bool last = std::find(report.finished.begin(), report.finished.end(), r.slot) != report.finished.end();
    const bool due = r.progress.step - info.checkpoint_step >= options_.checkpoint_every_steps ||
                     std::chrono::duration<double>(now - info.last_checkpoint).count() >= options_.checkpoint_every_seconds;
    if (!last && due) {
      agent_->upload_checkpoint(info.job_id, info.attempt, r.progress.step, trainer_->checkpoint(r.slot));
      info.checkpoint_step = r.progress.step;
      info.last_checkpoint = now;
    }
  }
  return Status::ok();
}

void GroupRunner::update_agent() {
  std::vector<agent::JobProgress> progress;
  for (const auto& [slot, info] : slots_) {
    const auto& p = trainer_->progress(slot);
    progress.push_back({info.job_id, info.attempt, p.step, p.total_steps, info.last_loss});
  }
  agent_->set_progress(std::move(progress));
}

void GroupRunner::shutdown() {
  if (!leader_) return;
  // Every slot checkpoints and gives its lease back, so the jobs resume elsewhere at once; no
  // new lease may fill the slots they leave.
  agent_->stop_leasing();
  for (const auto& [slot, info] : slots_) {
    agent_->upload_checkpoint(info.job_id, info.attempt, trainer_->progress(slot).step, trainer_->checkpoint(slot));
    agent_->release(info.job_id, info.attempt);
  }
  if (!agent_->drain(std::chrono::seconds(30))) BITFLEET_LOG(kWarning) << "left with reports the coordinator did not take";
  agent_->stop();
  BITFLEET_LOG(kInfo) << "the worker group left cleanly (" << slots_.size() << " jobs handed back)";
}

int GroupRunner::run() {
  if (Status s = setup(); !s.is_ok()) {
    BITFLEET_LOG(kError) << s.to_string();
    // The other ranks would wait for a plan forever: end the group.
    if (comm_.size() > 1) comm_.abort_group(1);
    return 1;
  }
  if (Status s = engine::run_slot_loop(*trainer_, *this); !s.is_ok()) {
    // A collective failed or timed out (a hung rank): the whole group ends so that the
    // coordinator requeues its jobs.
    BITFLEET_LOG(kError) << "the worker group cannot go on: " << s.to_string();
    comm_.abort_group(3);
  }
  shutdown();
  return 0;
}

}  // namespace

int run_worker_group(const GroupOptions& options, comm::Communicator& comm, const std::atomic<bool>& stop_requested) {
  GroupRunner runner(options, comm, stop_requested);
  return runner.run();
}

}  // namespace bitfleet::worker
