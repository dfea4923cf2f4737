// The bitfleet CLI's commands. Each reads its own flags, calls Flags::finish() before it acts (so
// a typo changes nothing on the coordinator), prints a table — or JSON with --json — and returns
// the process exit code (cli/api.h lists them).
// Thread-safety: run one command per process.
#pragma once

#include <atomic>
#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "cli/api.h"
#include "common/flags.h"

namespace bitfleet::cli {

struct Context {
  Api& api;
  bool json = false;  // --json: the coordinator's objects, for scripts
  std::ostream& out;
  std::ostream& err;
  const std::atomic<bool>& interrupted;  // Ctrl-C
  std::string token;                      // the caller's bearer token (bitfleet-serve takes it too)
  std::chrono::milliseconds timeout{60000};
};

using Args = std::vector<std::string>;  // the positionals after the command's name

int files_command(Context& ctx, common::Flags& flags, const Args& args);
int submit_command(Context& ctx, common::Flags& flags, const Args& args);
int jobs_command(Context& ctx, common::Flags& flags, const Args& args);
int watch_command(Context& ctx, common::Flags& flags, const Args& args);
int events_command(Context& ctx, common::Flags& flags, const Args& args);
int cancel_command(Context& ctx, common::Flags& flags, const Args& args);
int download_command(Context& ctx, common::Flags& flags, const Args& args);
int workers_command(Context& ctx, common::Flags& flags, const Args& args);
int sweep_command(Context& ctx, common::Flags& flags, const Args& args);
int predict_command(Context& ctx, common::Flags& flags, const Args& args);  // cli/predict.cpp

// Prints "bitfleet: <message>" and returns the status's exit code.
int fail(Context& ctx, const Status& status);
// Follows `ids` to the end (submit --watch, watch): the live view, then the summary table.
int watch_ids(Context& ctx, const std::vector<std::string>& ids, double interval_seconds);

}  // namespace bitfleet::cli
