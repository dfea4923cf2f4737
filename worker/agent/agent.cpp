#include "worker/agent/agent.h"

#include <algorithm>
#include <cmath>

#include "common/log.h"

namespace bitfleet::agent {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

std::string query(const std::string& group, int64_t attempt) {
  return "worker_group=" + group + "&attempt=" + std::to_string(attempt);
}

}  // namespace

Agent::Agent(AgentOptions options) : options_(std::move(options)) {}

Agent::~Agent() { stop(); }

Status Agent::start() {
  auto endpoint = net::parse_url(options_.coordinator_url);
  if (!endpoint.is_ok()) {
    return invalid_argument("--coordinator: " + endpoint.status().message(), "coordinator");
  }
  client_ = std::make_unique<net::HttpClient>(*endpoint, options_.token, options_.request_timeout);
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void Agent::stop() {
  stop_ = true;
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string Agent::group_id() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return group_id_;
}

std::vector<LeasedJob> Agent::take_leased() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(leased_, {});
}

std::vector<std::string> Agent::take_dropped() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(dropped_, {});
}

void Agent::stop_leasing() {
  std::lock_guard<std::mutex> lock(mutex_);
  leasing_ = false;
}

int64_t Agent::free_slots() const {
  return leasing_ ? std::max<int64_t>(0, options_.slots - static_cast<int64_t>(held_.size())) : 0;
}

void Agent::let_go(const std::string& job_id) {
  if (held_.erase(job_id) > 0) lease_now_ = true;
}

void Agent::set_progress(std::vector<JobProgress> jobs) {
  std::lock_guard<std::mutex> lock(mutex_);
  progress_ = std::move(jobs);
}

void Agent::wait_for_work(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  loop_wake_.wait_for(lock, timeout, [&] { return !leased_.empty() || !dropped_.empty(); });
}

void Agent::push(Report report) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (report.kind == Report::kComplete || report.kind == Report::kFail || report.kind == Report::kRelease) {
      let_go(report.job_id);
    }
    outbox_.push_back(std::move(report));
  }
  wake_.notify_all();
}

void Agent::send_events(const std::string& job_id, int64_t attempt, std::vector<protocol::JobEvent> events) {
  Report report{Report::kEvents, job_id, attempt};
  report.events = std::move(events);
  push(std::move(report));
}

void Agent::upload_checkpoint(const std::string& job_id, int64_t attempt, int64_t step, std::string bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Replace a checkpoint of this job still waiting (never the front: it may be in flight).
    for (size_t i = 1; i < outbox_.size(); ++i) {
      Report& r = outbox_[i];
      if (r.kind == Report::kCheckpoint && r.job_id == job_id && r.attempt == attempt) {
        r.step = step;
        r.bytes = std::move(bytes);
        return;
      }
    }
    outbox_.push_back({Report::kCheckpoint, job_id, attempt, step, std::move(bytes)});
  }
  wake_.notify_all();
}

void Agent::complete(const std::string& job_id, int64_t attempt, std::string artifact, protocol::CompleteReport result) {
  push({Report::kArtifact, job_id, attempt, 0, std::move(artifact)});
  Report report{Report::kComplete, job_id, attempt};
  if (!result.metrics.is_object()) result.metrics = json::object();
  if (result.train_loss && !std::isfinite(*result.train_loss)) result.train_loss.reset();
  report.complete = std::move(result);
  push(std::move(report));
}

void Agent::fail(const std::string& job_id, int64_t attempt, const std::string& reason) {
  Report report{Report::kFail, job_id, attempt};
  report.reason = reason;
  push(std::move(report));
}

void Agent::release(const std::string& job_id, int64_t attempt) {
  push({Report::kRelease, job_id, attempt});
}

bool Agent::drain(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (outbox_.empty()) return true;
    }
    wake_.notify_all();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool Agent::ensure_registered() {
  if (registered_) return true;
  // After a coordinator lost us, the same id: we keep our leases.
  const protocol::Registration message{group_id(),      options_.name,       options_.backbone,
                                       options_.backbone_sha256, options_.device, options_.dtype,
                                       options_.cpu,     options_.slots,      options_.ranks,
                                       options_.max_labels,      options_.max_seq_len};
  auto r = client_->request("POST", "/internal/v1/workers", protocol::to_json(message).dump());
  if (!r.is_ok() || r->status != 201) {
    BITFLEET_LOG(kWarning) << "registering with " << options_.coordinator_url << ": "
                           << (r.is_ok() ? r->problem_text() : r.status().message());
    return false;
  }
  auto reply = protocol::parse_registration_reply(r->body);
  if (!reply.is_ok()) {
    BITFLEET_LOG(kWarning) << "registering with " << options_.coordinator_url << ": " << reply.status().message();
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    group_id_ = reply->id;
    heartbeat_every_ = std::chrono::milliseconds(static_cast<int64_t>(reply->heartbeat_seconds * 1000));
    next_heartbeat_ = Clock::now();
  }
  registered_ = true;
  BITFLEET_LOG(kInfo) << "registered as worker group " << group_id_ << " (" << options_.slots << " slots, "
                      << options_.ranks << " ranks, backbone " << options_.backbone << ")";
  return true;
}

void Agent::heartbeat() {
  protocol::Heartbeat message;
  std::string group;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& p : progress_) {
      message.jobs.push_back({p.job_id, p.attempt, p.step, p.total_steps,
                              std::isfinite(p.train_loss) ? std::optional(p.train_loss) : std::nullopt});
    }
    message.free_slots = free_slots();
    group = group_id_;
  }
  auto r = client_->request("POST", "/internal/v1/workers/" + group + "/heartbeat", protocol::to_json(message).dump());
  std::lock_guard<std::mutex> lock(mutex_);
  if (!r.is_ok() || r->status >= 500) {
    next_heartbeat_ = Clock::now() + std::chrono::milliseconds(500);  // the coordinator is away: try again soon
    return;
  }
  next_heartbeat_ = Clock::now() + heartbeat_every_;
  if (r->status == 404) {
    registered_ = false;
    return;
  }
  if (!r->ok()) {
    BITFLEET_LOG(kWarning) << "heartbeat: " << r->problem_text();
    return;
  }
  auto reply = protocol::parse_heartbeat_reply(r->body);
  if (!reply.is_ok()) {
    BITFLEET_LOG(kWarning) << "heartbeat: " << reply.status().message();
    next_heartbeat_ = Clock::now() + std::chrono::milliseconds(500);
    return;
  }
  for (const auto& id : reply->cancel) {
    dropped_.push_back(id);
    let_go(id);
  }
  if (!dropped_.empty()) loop_wake_.notify_all();
}

void Agent::lease() {
  int64_t wanted;
  std::string group;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wanted = free_slots();
    group = group_id_;
    lease_now_ = false;
    next_lease_ = Clock::now() + options_.lease_poll;
  }
  if (wanted <= 0) return;
  auto r = client_->request("POST", "/internal/v1/workers/" + group + "/lease",
                            protocol::to_json(protocol::LeaseRequest{wanted}).dump());
  if (!r.is_ok() || !r->ok()) {
    BITFLEET_LOG(kWarning) << "leasing jobs: " << (r.is_ok() ? r->problem_text() : r.status().message());
    if (r.is_ok() && r->status == 404) registered_ = false;
    return;
  }
  auto grant = protocol::parse_lease_grant(r->body);
  if (!grant.is_ok()) {
    // Jobs it may have leased to us expire and are requeued; nothing here can run them.
    BITFLEET_LOG(kWarning) << "leasing jobs: " << grant.status().message();
    return;
  }
  std::vector<LeasedJob>& jobs = grant->jobs;
  if (jobs.empty()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& job : jobs) {
    BITFLEET_LOG(kInfo) << "leased " << job.id << " (attempt " << job.attempt << ")";
    held_.insert(job.id);
    leased_.push_back(std::move(job));
  }
  loop_wake_.notify_all();
}

bool Agent::send(Report& report) {
  const std::string group = group_id();
  const std::string base = "/internal/v1/jobs/" + report.job_id;
  const net::HttpClient::Headers binary = {{"Content-Type", "application/octet-stream"}};
  Result<net::HttpResponse> r = unavailable("unsent");
  const protocol::Fence fence{group, report.attempt};
  switch (report.kind) {
    case Report::kEvents:
      r = client_->request("POST", base + "/events", protocol::to_json(protocol::EventsReport{fence, report.events}).dump());
      break;
    case Report::kCheckpoint:
      r = client_->request("PUT", base + "/checkpoint?" + query(group, report.attempt) + "&step=" + std::to_string(report.step),
                           report.bytes, binary);
      break;
    case Report::kArtifact:
      r = client_->request("PUT", base + "/artifact?" + query(group, report.attempt), report.bytes, binary);
      break;
    case Report::kComplete:
      report.complete.fence = fence;
      r = client_->request("POST", base + "/complete", protocol::to_json(report.complete).dump());
      break;
    case Report::kFail:
      r = client_->request("POST", base + "/fail", protocol::to_json(protocol::FailReport{fence, report.reason}).dump());
      break;
    case Report::kRelease:
      r = client_->request("POST", base + "/release", protocol::to_json(protocol::ReleaseReport{fence}).dump());
      break;
  }
  if (!r.is_ok() || r->status >= 500) return false;  // the coordinator is away: keep it, retry
  if (!r->ok()) {
    BITFLEET_LOG(kWarning) << "dropping a report for " << report.job_id << ": " << r->problem_text();
  }
  return true;
}

void Agent::run() {
  while (!stop_) {
    if (!ensure_registered()) {
      // A coordinator that is down for long is asked less often: 0.5 s, doubling up to 5 s.
      register_backoff_ = std::min(std::chrono::milliseconds(5000), std::max(register_backoff_ * 2, std::chrono::milliseconds(500)));
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, register_backoff_, [&] { return stop_.load(); });
      continue;
    }
    register_backoff_ = std::chrono::milliseconds(0);
    bool heartbeat_due, lease_due;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = Clock::now();
      heartbeat_due = now >= next_heartbeat_;
      lease_due = free_slots() > 0 && (lease_now_ || now >= next_lease_);
    }
    if (heartbeat_due) heartbeat();
    if (lease_due && registered_) lease();
    // Reports, oldest first; on a transport failure stop and back off, keeping the order.
    bool delivered_all = true;
    while (registered_) {
      Report report;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (outbox_.empty()) break;
        report = outbox_.front();
      }
      if (!send(report)) {
        delivered_all = false;
        break;
      }
      std::lock_guard<std::mutex> lock(mutex_);
      outbox_.pop_front();
    }
    backoff_ = delivered_all ? std::chrono::milliseconds(0)
                             : std::min(std::chrono::milliseconds(2000), backoff_ * 2 + std::chrono::milliseconds(100));
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait_for(lock, std::max(backoff_, std::chrono::milliseconds(50)), [&] {
      return stop_.load() || (backoff_.count() == 0 && !outbox_.empty()) || lease_now_;
    });
  }
}

}  // namespace bitfleet::agent
