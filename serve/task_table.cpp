#include "serve/task_table.h"

#include <algorithm>

#include "common/log.h"
#include "serve/serve_metrics.h"

namespace bitfleet::serve {

TaskTable::Lease::Lease(TaskTable* table, std::string key, int slot, std::shared_ptr<const TaskInfo> info)
    : table_(table), key_(std::move(key)), slot_(slot), info_(std::move(info)) {}

TaskTable::Lease::Lease(Lease&& other) noexcept
    : table_(std::exchange(other.table_, nullptr)), key_(std::move(other.key_)), slot_(other.slot_),
      info_(std::move(other.info_)) {}

TaskTable::Lease::~Lease() {
  if (table_ != nullptr) table_->unpin(key_);
}

TaskTable::TaskTable(int64_t slots, Loader loader, Installer installer, ServeMetrics* metrics)
    : loader_(std::move(loader)), installer_(std::move(installer)), metrics_(metrics) {
  for (int s = static_cast<int>(slots) - 1; s >= 0; --s) free_slots_.push_back(s);  // slot 0 first
}

Result<TaskTable::Lease> TaskTable::acquire(const std::string& key, Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  while (true) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return load(key, lock);
    if (!it->second.loading) {
      Entry& e = it->second;
      ++e.pins;
      e.last_used = ++clock_;
      return Lease(this, key, e.slot, e.info);
    }
    // Another request is loading it: wait for that load (its failure erases the entry, and this
    // request then tries itself).
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
      return Status(StatusCode::kDeadlineExceeded, "the request's deadline passed while task " + key + " was loading");
    }
  }
}

Result<TaskTable::Lease> TaskTable::load(const std::string& key, std::unique_lock<std::mutex>& lock) {
  entries_[key] = Entry{};
  lock.unlock();
  const auto start = Clock::now();
  Result<LoadedTask> loaded = loader_(key);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  lock.lock();
  auto fail = [&](const Status& s) {
    entries_.erase(key);
    changed_.notify_all();
    if (metrics_) metrics_->task_load(false, seconds);
    BITFLEET_LOG(kWarning) << "loading task " << key << " failed: " << s.message();
    return s;
  };
  if (!loaded.is_ok()) return fail(loaded.status());
  const int slot = take_slot();
  if (slot < 0) {
    return fail(Status(StatusCode::kResourceExhausted,
                       "every task slot holds a task with requests in flight; retry shortly (or raise --max-tasks)"));
  }
  installer_(slot, std::move(loaded->row));
  Entry& e = entries_[key];
  e.loading = false;
  e.slot = slot;
  e.info = std::move(loaded->info);
  e.pins = 1;
  e.last_used = ++clock_;
  changed_.notify_all();
  if (metrics_) {
    metrics_->task_load(true, seconds);
    metrics_->tasks_resident(static_cast<int64_t>(
        std::count_if(entries_.begin(), entries_.end(), [](const auto& x) { return !x.second.loading; })));
  }
  BITFLEET_LOG(kInfo) << "task " << key << " loaded into slot " << slot << " in " << seconds << " s";
  return Lease(this, key, slot, e.info);
}

int TaskTable::take_slot() {
  if (!free_slots_.empty()) {
    int slot = free_slots_.back();
    free_slots_.pop_back();
    return slot;
  }
  auto victim = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const Entry& e = it->second;
    if (e.loading || e.pins > 0) continue;
    if (victim == entries_.end() || e.last_used < victim->second.last_used) victim = it;
  }
  if (victim == entries_.end()) return -1;
  const int slot = victim->second.slot;
  BITFLEET_LOG(kInfo) << "task " << victim->first << " evicted from slot " << slot;
  entries_.erase(victim);
  if (metrics_) metrics_->task_evicted();
  return slot;
}

void TaskTable::unpin(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.pins > 0) --it->second.pins;
}

int64_t TaskTable::resident() const {
  std::lock_guard lock(mu_);
  return static_cast<int64_t>(std::count_if(entries_.begin(), entries_.end(), [](const auto& e) { return !e.second.loading; }));
}

bool TaskTable::is_resident(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  return it != entries_.end() && !it->second.loading;
}

}  // namespace bitfleet::serve
