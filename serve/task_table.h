// TaskTable: which tuned tasks are resident in the model's slots, and loading and evicting them.
//
// A request acquires its task: a resident task is pinned and returned at once (a map lookup under
// one mutex); a task that is not resident is loaded by the first request that asks for it, on that
// request's own thread and outside the mutex (fetch, sha256, safetensors, the row), while requests
// for resident tasks go on; later requests for the same task wait for that load. A loaded task
// takes a free slot, or the slot of the least recently used task that no request has pinned; its
// row reaches the model through the installer (the batcher applies it before its next batch, so
// every request queued after the install sees it). A pinned task is never evicted, so no request
// in the queue ever runs with another task's parameters.
// Thread-safety: every method from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "serve/artifact.h"

namespace bitfleet::serve {

class ServeMetrics;

class TaskTable {
 public:
  using Clock = std::chrono::steady_clock;
  // Fetches and reads a task's artifact (slow: the network, hashing); `key` names it.
  using Loader = std::function<Result<LoadedTask>(const std::string& key)>;
  // Puts a row into a slot of the model (fast; applied by the batcher before its next batch).
  using Installer = std::function<void(int slot, std::vector<float> row)>;

  TaskTable(int64_t slots, Loader loader, Installer installer, ServeMetrics* metrics);

  // A pinned resident task; the pin is dropped when the lease is destroyed.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    int slot() const { return slot_; }
    const TaskInfo& info() const { return *info_; }

   private:
    friend class TaskTable;
    Lease(TaskTable* table, std::string key, int slot, std::shared_ptr<const TaskInfo> info);
    TaskTable* table_;
    std::string key_;
    int slot_;
    std::shared_ptr<const TaskInfo> info_;
  };

  // The task `key` resident and pinned, loading it first if it is not; waits for a load until
  // `deadline` (kDeadlineExceeded past it). kResourceExhausted when every slot holds a pinned task.
  Result<Lease> acquire(const std::string& key, Clock::time_point deadline);

  int64_t resident() const;
  bool is_resident(const std::string& key) const;

 private:
  struct Entry {
    bool loading = true;
    int slot = -1;
    int64_t pins = 0;
    uint64_t last_used = 0;
    std::shared_ptr<const TaskInfo> info;
  };

  Result<Lease> load(const std::string& key, std::unique_lock<std::mutex>& lock);
  // A free slot, or the least recently used unpinned task's (evicted); -1 when none.
  int take_slot();
  void unpin(const std::string& key);

  Loader loader_;
  Installer installer_;
  ServeMetrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Entry> entries_;
  std::vector<int> free_slots_;
  uint64_t clock_ = 0;
};

}  // namespace bitfleet::serve
