#include "common/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

namespace bitfleet {
namespace {

std::mutex g_role_mutex;
std::string g_role = "bitfleet";

LogLevel min_level() {
  static const LogLevel level = [] {
    const char* v = std::getenv("BITFLEET_LOG_LEVEL");
    if (v == nullptr) return LogLevel::kInfo;
    if (std::strcmp(v, "debug") == 0) return LogLevel::kDebug;
    if (std::strcmp(v, "warning") == 0) return LogLevel::kWarning;
    if (std::strcmp(v, "error") == 0) return LogLevel::kError;
    return LogLevel::kInfo;
  }();
  return level;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "D";
    case LogLevel::kInfo: return "I";
    case LogLevel::kWarning: return "W";
    case LogLevel::kError: return "E";
  }
  return "?";
}

}  // namespace

void set_log_role(std::string role) {
  std::lock_guard<std::mutex> lock(g_role_mutex);
  g_role = std::move(role);
}

bool log_enabled(LogLevel level) { return level >= min_level(); }

LogLine::LogLine(LogLevel level, const char* file, int line) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  const char* base = std::strrchr(file, '/');
  std::string role;
  {
    std::lock_guard<std::mutex> lock(g_role_mutex);
    role = g_role;
  }
  stream_ << stamp << '.' << (ms < 100 ? (ms < 10 ? "00" : "0") : "") << ms << "Z " << level_name(level)
          << ' ' << role << ' ' << (base ? base + 1 : file) << ':' << line << "] ";
}

LogLine::~LogLine() {
  stream_ << '\n';
  std::string text = stream_.str();
  // One write(2) per line keeps lines whole across threads and processes sharing stderr.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace bitfleet
