// bitfleet: the users' command-line client. Parses the global flags, connects, dispatches.
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>

#include "cli/commands.h"

using namespace bitfleet;
using namespace bitfleet::cli;

namespace {

constexpr const char* kUsage = R"(bitfleet — the client of a bitfleet coordinator (BitFit fine-tuning as a service)

usage: bitfleet [--url URL] [--token TOKEN | --token-file FILE] [--json] COMMAND …

  files upload PATH…                 upload datasets (each distinct content once); prints file ids
  files list                         the files you uploaded
  submit JOB.json [--watch]          create the job (or {"jobs": […]}) in JOB.json; local
                                     train_file/validation_file paths are uploaded first
  submit --manifest tasks.csv        one job per row (CSV, TSV or JSONL); see docs/user-guide.md
         [--defaults JOB.json] [--backbone NAME] [--batch-size N] [--watch]
  sweep JOB.json --grid K=V1,V2…     a sweep: one variant per point of the grid (--grid again for
        [--strategy grid|successive_halving] [--eta N] [--metric M] [--mode min|max] [--watch]
                                     more keys), trained side by side; the best by --metric wins
  jobs [--status S] [--limit N]      list jobs, newest first
  watch JOB… | --all [--interval S]  follow jobs (or a sweep's variants) to the end
  events JOB                         a job's training log
  cancel JOB…                        cancel queued or running jobs
  download JOB… [-o DIR]             fetch artifacts (checked against their sha256); a sweep id
                                     fetches its best variant's, as SWEEP.safetensors
  workers                            worker groups, their backbone and free slots
  predict TASK --text T [--text-pair P]   a prediction from bitfleet-serve (TASK: a job or sweep
          | --tokens "W1 W2 …"       id; --serve URL, default $BITFLEET_SERVE_URL, else
          | --file F [-o out.jsonl]  http://127.0.0.1:8090); --file: every record, --batch N
            [--fields A[,B]]         inputs a request, one JSON line each, in order

  --url URL          the coordinator (default $BITFLEET_URL, else http://127.0.0.1:8080)
  --token TOKEN      bearer token (default $BITFLEET_TOKEN); --token-file FILE (or
                     $BITFLEET_TOKEN_FILE) reads it from a file
  --json             print the coordinator's JSON objects, for scripts
  --timeout S        seconds per request (default 60)

exit codes: 0 ok; 1 a watched job failed or was cancelled; 2 bad input (usage, files, or the
coordinator's 400/413/422); 3 refused (401/403/404/409); 4 coordinator unreachable or failing;
130 interrupted
)";

std::atomic<bool> g_interrupted{false};

extern "C" void on_interrupt(int) { g_interrupted = true; }

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

// -o DIR and -h are the only short flags; common::Flags reads long ones.
std::vector<std::string> expand_short_flags(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    args.push_back(a == "-o" ? "--out" : a == "-h" ? "--help" : a);
  }
  return args;
}

Result<std::string> read_token(common::Flags& flags) {
  if (auto token = flags.optional_string("token")) return *token;
  auto file = flags.optional_string("token-file");
  if (!file && std::getenv("BITFLEET_TOKEN") && *std::getenv("BITFLEET_TOKEN")) return std::string(std::getenv("BITFLEET_TOKEN"));
  const std::string path = file.value_or(env_or("BITFLEET_TOKEN_FILE", ""));
  if (path.empty()) return std::string();
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) return invalid_argument("--token-file: cannot read " + path);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  return token;
}

}  // namespace

int main(int argc, char** argv) {
  common::Flags flags(expand_short_flags(argc, argv), {"json", "watch", "all", "help"});
  ApiOptions options;
  options.url = flags.string("url", env_or("BITFLEET_URL", options.url));
  auto token = read_token(flags);
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.number("timeout", 0.1, 86400, 60) * 1000));
  const bool json = flags.boolean("json");
  const auto& positionals = flags.positionals();
  if (flags.boolean("help") || positionals.empty() || positionals[0] == "help") {
    std::cout << kUsage;
    return positionals.empty() && !flags.boolean("help") ? kExitBadInput : kExitOk;
  }
  if (!token.is_ok()) {
    std::cerr << "bitfleet: " << token.status().message() << "\n";
    return kExitBadInput;
  }
  options.token = *token;
  auto api = Api::connect(options);
  if (!api.is_ok()) {
    std::cerr << "bitfleet: " << api.status().message() << "\n";
    return kExitBadInput;
  }

  std::signal(SIGINT, on_interrupt);
  std::signal(SIGPIPE, SIG_IGN);
  Context ctx{**api, json, std::cout, std::cerr, g_interrupted, options.token, options.timeout};
  using Command = int (*)(Context&, common::Flags&, const Args&);
  const std::map<std::string, Command> commands = {
      {"files", files_command},   {"submit", submit_command}, {"jobs", jobs_command},
      {"watch", watch_command},   {"events", events_command}, {"cancel", cancel_command},
      {"download", download_command}, {"workers", workers_command}, {"sweep", sweep_command},
      {"predict", predict_command}};
  auto command = commands.find(positionals[0]);
  if (command == commands.end()) {
    std::cerr << "bitfleet: unknown command \"" << positionals[0] << "\" (bitfleet help lists them)\n";
    return kExitBadInput;
  }
  const int code = command->second(ctx, flags, Args(positionals.begin() + 1, positionals.end()));
  std::cout.flush();
  return code;
}
