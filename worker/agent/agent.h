// Agent: rank 0's client of the coordinator. Only rank 0 speaks HTTP to the coordinator.
//
// A thread registers the worker group, leases queued jobs whenever the group holds fewer than
// `slots` (a job is held from its lease until the loop completes, fails or releases it, or the
// coordinator drops it — so a job taken by the loop but not yet in a slot still counts, and the
// group never leases more than it can admit), heartbeats with every running job's progress (learning which jobs to drop: cancelled
// or leased to another attempt), and sends the loop's reports — events, checkpoints, artifacts,
// completions, failures, releases — in the order the loop made them. Transport errors and 5xx are
// retried with backoff (a restarting coordinator loses nothing); a report the coordinator refuses
// as stale (409) or unknown (404) is dropped, since the job has moved on without this group. A
// reply that is not the protocol's (common/protocol.h: a proxy's HTML page, a truncated body) is
// logged and the call tried again later, like a transport error; it never ends the process.
//
// The training loop never blocks on HTTP: it exchanges state with the agent through methods that
// only take a lock. Thread-safety: all public methods may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/net/http_client.h"
#include "common/protocol.h"

namespace bitfleet::agent {

using protocol::FileRef;
using protocol::LeasedJob;

struct JobProgress {
  std::string job_id;
  int64_t attempt = 0, step = 0, total_steps = 0;
  double train_loss = 0;  // of the latest step (shown live by `bitfleet watch`)
};

struct AgentOptions {
  std::string coordinator_url;
  std::string token;
  std::string name;
  std::string backbone;
  std::string backbone_sha256;
  std::string device = "cpu";
  std::string dtype = "fp32";
  std::string cpu;
  int64_t slots = 1;
  int64_t ranks = 1;
  int64_t max_labels = 64;
  int64_t max_seq_len = 512;
  std::chrono::milliseconds lease_poll{500};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(60)};
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  // Starts the agent's thread; an unparsable coordinator URL is invalid_argument (nothing starts).
  Status start();
  void stop();

  // The loop's side.
  std::vector<LeasedJob> take_leased();
  std::vector<std::string> take_dropped();  // job ids the coordinator no longer leases to us
  // No more leases (the group is leaving); held jobs are released by the loop.
  void stop_leasing();
  void set_progress(std::vector<JobProgress> jobs);
  void send_events(const std::string& job_id, int64_t attempt, std::vector<protocol::JobEvent> events);
  // A newer checkpoint of a job replaces one still waiting to be sent.
  void upload_checkpoint(const std::string& job_id, int64_t attempt, int64_t step, std::string bytes);
  // The artifact, then the completion (its fence is set when sent).
  void complete(const std::string& job_id, int64_t attempt, std::string artifact, protocol::CompleteReport result);
  void fail(const std::string& job_id, int64_t attempt, const std::string& reason);
  void release(const std::string& job_id, int64_t attempt);
  // Waits until every queued report is sent or dropped; false on timeout.
  bool drain(std::chrono::milliseconds timeout);

  bool registered() const { return registered_; }
  std::string group_id() const;
  // Wakes whoever waits in wait_for_work(): a lease or drop arrived.
  void wait_for_work(std::chrono::milliseconds timeout);

 private:
  struct Report {
    enum Kind { kEvents, kCheckpoint, kArtifact, kComplete, kFail, kRelease } kind;
    std::string job_id;
    int64_t attempt = 0, step = 0;
    std::string bytes;                       // kCheckpoint, kArtifact
    std::vector<protocol::JobEvent> events;  // kEvents
    protocol::CompleteReport complete;       // kComplete (its fence is set when sent)
    std::string reason;                      // kFail
  };
  void run();
  bool ensure_registered();
  void lease();
  void heartbeat();
  // Sends the oldest report; false when it could not be sent now (retry later).
  bool send(Report& report);
  void push(Report report);
  // The loop is done with `job_id`: its slot is free. Caller holds mutex_.
  void let_go(const std::string& job_id);
  // Slots free for new leases. Caller holds mutex_.
  int64_t free_slots() const;

  AgentOptions options_;
  std::unique_ptr<net::HttpClient> client_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> registered_{false};

  mutable std::mutex mutex_;
  std::condition_variable wake_;        // the agent thread's
  std::condition_variable loop_wake_;   // the training loop's
  std::string group_id_;
  std::deque<Report> outbox_;
  std::vector<LeasedJob> leased_;
  std::vector<std::string> dropped_;
  std::vector<JobProgress> progress_;
  std::set<std::string> held_;  // leased and not yet let go
  bool leasing_ = true;
  bool lease_now_ = true;
  std::chrono::steady_clock::time_point next_heartbeat_{}, next_lease_{};
  std::chrono::milliseconds heartbeat_every_{std::chrono::seconds(5)};
  std::chrono::milliseconds backoff_{0};
  std::chrono::milliseconds register_backoff_{0};
};

}  // namespace bitfleet::agent
