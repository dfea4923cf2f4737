#include "cli/watch.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <thread>

#include "cli/job_view.h"

namespace bitfleet::cli {

using nlohmann::json;

namespace {

std::string clock_time() {
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[16];
  std::strftime(text, sizeof(text), "%H:%M:%S", &local);
  return text;
}

std::string duration_text(double seconds) {
  const int s = static_cast<int>(seconds);
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + (s % 60 < 10 ? "0" : "") + std::to_string(s % 60) + "s";
  return std::to_string(s / 3600) + "h" + (s % 3600 / 60 < 10 ? "0" : "") + std::to_string(s % 3600 / 60) + "m";
}

std::string progress_text(const json& job) {
  const json& progress = job.value("progress", json::object());
  std::string text = "step " + std::to_string(progress.value("step", 0));
  if (progress.value("total_steps", json()).is_number()) text += "/" + std::to_string(progress["total_steps"].get<int64_t>());
  if (job.value("train_loss", json()).is_number()) text += "  loss " + format_number(job["train_loss"].get<double>());
  return text;
}

std::string outcome_text(const json& job) {
  const std::string status = job.value("status", "");
  std::string text = status;
  if (auto metric = headline_metric(job)) text += "  " + metric->first + " " + format_number(metric->second);
  if (status == "failed" && job.value("error", json()).is_object()) text += ": " + job["error"].value("message", "");
  if (auto seconds = job_seconds(job)) text += "  (" + duration_text(*seconds) + ")";
  return text;
}

std::string bar(double fraction, int width) {
  const int filled = static_cast<int>(fraction * width + 0.5);
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

std::string fit(std::string line, int width) {
  // Cut by code points, so a redraw never wraps (a wrapped line would throw off the cursor count).
  size_t count = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if ((line[i] & 0xC0) != 0x80 && ++count > static_cast<size_t>(std::max(width - 1, 10))) return line.substr(0, i);
  }
  return line;
}

// The in-place view: counts, then one bar per running job.
class TerminalView {
 public:
  TerminalView(const WatchOptions& options, std::ostream& out) : options_(options), out_(out) {}

  void draw(const std::vector<json>& jobs, double elapsed) {
    std::map<std::string, int> counts, waiting;  // waiting: queued jobs by why no group can run them
    std::vector<const json*> running;
    size_t name_width = 4;
    for (const json& job : jobs) {
      ++counts[job.value("status", "")];
      if (const std::string why = waiting_reason(job); !why.empty()) ++waiting[why];
      if (job.value("status", "") == "running") {
        running.push_back(&job);
        name_width = std::max(name_width, display_width(job_name(job)));
      }
    }
    name_width = std::min<size_t>(name_width, 28);
    std::vector<std::string> lines;
    lines.push_back(std::to_string(jobs.size()) + " jobs: " + std::to_string(counts["succeeded"]) + " succeeded, " +
                    std::to_string(counts["failed"]) + " failed, " + std::to_string(counts["cancelled"]) +
                    " cancelled, " + std::to_string(counts["running"]) + " running, " +
                    std::to_string(counts["queued"]) + " queued  [" + duration_text(elapsed) + "]");
    for (const auto& [why, n] : waiting) lines.push_back("  " + std::to_string(n) + " queued: " + why);
    const size_t room = static_cast<size_t>(std::max(options_.height - 3 - static_cast<int>(waiting.size()), 1));
    for (size_t i = 0; i < running.size() && i < room; ++i) {
      const json& job = *running[i];
      std::string name = job_name(job);
      name = name.substr(0, name_width) + std::string(name_width - std::min(name_width, display_width(name)), ' ');
      const double fraction = job_fraction(job);
      char percent[8];
      std::snprintf(percent, sizeof(percent), "%3d%%", static_cast<int>(fraction * 100));
      lines.push_back("  " + name + " " + bar(fraction, 24) + " " + percent + "  " + progress_text(job));
    }
    if (running.size() > room) lines.push_back("  … and " + std::to_string(running.size() - room) + " more running");
    if (drawn_ > 0) out_ << "\x1b[" << drawn_ << "F\x1b[J";  // back to the first line drawn, clear below
    for (const auto& line : lines) out_ << fit(line, options_.width) << "\n";
    out_.flush();
    drawn_ = static_cast<int>(lines.size());
  }

 private:
  const WatchOptions& options_;
  std::ostream& out_;
  int drawn_ = 0;
};

// The piped view: a line per status change (a queued job's with its waiting_reason, and again when
// that changes), or progress past another tenth.
class PlainView {
 public:
  explicit PlainView(std::ostream& out) : out_(out) {}

  void draw(const std::vector<json>& jobs) {
    for (const json& job : jobs) {
      const std::string id = job.value("id", ""), status = job.value("status", ""), why = waiting_reason(job);
      const int tenth = static_cast<int>(job_fraction(job) * 10);
      Seen& seen = seen_[id];
      const std::string label = id + (job_name(job) != id ? " (" + job_name(job) + ")" : "");
      if (status != seen.status || why != seen.why) {
        out_ << clock_time() << " " << label << " " << (is_finished(job) ? outcome_text(job) : status)
             << (why.empty() ? "" : ": " + why) << "\n";
      } else if (status == "running" && tenth > seen.tenth) {
        out_ << clock_time() << " " << label << " running " << tenth * 10 << "%  " << progress_text(job) << "\n";
      }
      seen = {status, why, tenth};
    }
    out_.flush();
  }

 private:
  struct Seen {
    std::string status, why;
    int tenth = 0;
  };
  std::ostream& out_;
  std::map<std::string, Seen> seen_;
};

}  // namespace

Result<WatchResult> watch_jobs(Api& api, const std::vector<std::string>& ids, const WatchOptions& options,
                               const std::atomic<bool>& stop, std::ostream& out) {
  WatchResult result;
  result.jobs.assign(ids.size(), json::object());
  TerminalView terminal(options, out);
  PlainView plain(out);
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    bool all_finished = true;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (is_finished(result.jobs[i])) continue;
      if (stop) break;
      BITFLEET_ASSIGN_OR_RETURN(result.jobs[i], api.get("/v1/jobs/" + url_encode(ids[i])));
      all_finished = all_finished && is_finished(result.jobs[i]);
    }
    if (options.terminal) {
      terminal.draw(result.jobs, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    } else {
      plain.draw(result.jobs);
    }
    if (stop) {
      result.interrupted = true;
      return result;
    }
    if (all_finished) return result;
    // Sleep in small steps so that Ctrl-C ends the watch at once.
    const auto wake = std::chrono::steady_clock::now() + options.interval;
    while (!stop && std::chrono::steady_clock::now() < wake) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void print_summary(const std::vector<json>& jobs, std::ostream& out) {
  TextTable table({"JOB", "NAME", "STATUS", "METRIC", "VALUE", "SECONDS"});
  std::vector<std::string> failures;
  for (const json& job : jobs) {
    auto metric = headline_metric(job);
    auto seconds = job_seconds(job);
    const std::string id = job.value("id", "");
    table.add({id, job_name(job) == id ? "" : job_name(job), job.value("status", ""), metric ? metric->first : "",
               metric ? format_number(metric->second) : "", seconds ? format_number(*seconds, 0) : ""});
    if (job.value("status", "") == "failed" && job.value("error", json()).is_object()) {
      failures.push_back(id + ": " + job["error"].value("message", ""));
    }
  }
  out << "\n";
  table.print(out);
  if (!failures.empty()) {
    out << "\nfailures:\n";
    for (const auto& f : failures) out << "  " << f << "\n";
  }
}

bool is_ansi_terminal(int fd, int* width, int* height) {
  const char* term = std::getenv("TERM");
  if (!isatty(fd) || (term && std::string(term) == "dumb")) return false;
  winsize size{};
  if (ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
    *width = size.ws_col;
    *height = size.ws_row;
  }
  return true;
}

}  // namespace bitfleet::cli
