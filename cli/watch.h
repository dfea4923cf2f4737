// Watch: follows jobs until each has finished, showing their progress as it happens.
//
// On a terminal it redraws in place: a counts line (succeeded, failed, running, queued), why queued
// jobs that no live group can run are waiting, and a progress bar per running job, as many as fit.
// Piped, it prints one plain line per change — a status change or a new waiting reason, or progress
// past another tenth — so logs and CI read well. Either way it ends
// with a summary table (job, name, status, metric, value, seconds) and each failure's reason.
// Thread-safety: call from one thread; `stop` may be set from a signal handler.
#pragma once

#include <atomic>
#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/api.h"
#include "common/status.h"

namespace bitfleet::cli {

struct WatchOptions {
  std::chrono::milliseconds interval{2000};
  bool terminal = false;  // redraw with ANSI escapes; else plain lines
  int width = 100, height = 40;
};

struct WatchResult {
  std::vector<nlohmann::json> jobs;  // last known state, in the order asked
  bool interrupted = false;
};

Result<WatchResult> watch_jobs(Api& api, const std::vector<std::string>& ids, const WatchOptions& options,
                               const std::atomic<bool>& stop, std::ostream& out);

// The summary table and failure reasons that end a watch (also after `submit --watch`).
void print_summary(const std::vector<nlohmann::json>& jobs, std::ostream& out);

// Whether `fd` is a terminal that understands ANSI escapes, and its size.
bool is_ansi_terminal(int fd, int* width, int* height);

}  // namespace bitfleet::cli
