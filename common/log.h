// Logging: one line per event to stderr, with time, level, the process's role and the source line.
//
//   BITFLEET_LOG(kInfo) << "leased " << n << " jobs";
//
// Lines are written whole (one write per line), so lines from threads and ranks never interleave.
// The minimum level comes from BITFLEET_LOG_LEVEL (debug, info, warning, error; default info).
// Hot paths (the training step, request handlers) do not log per item.
// Thread-safety: safe from any thread.
#pragma once

#include <sstream>
#include <string>

namespace bitfleet {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Names the process in every line ("coordinator", "worker rank 1").
void set_log_role(std::string role);
bool log_enabled(LogLevel level);

class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  ~LogLine();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Swallows the stream expression's value so the macro is one expression (safe in an unbraced if).
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace bitfleet

#define BITFLEET_LOG(level)                                   \
  !::bitfleet::log_enabled(::bitfleet::LogLevel::level)       \
      ? (void)0                                               \
      : ::bitfleet::LogVoidify() & ::bitfleet::LogLine(::bitfleet::LogLevel::level, __FILE__, __LINE__).stream()
