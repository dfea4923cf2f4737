// bitfleet files | jobs | watch | events | cancel | download | workers.
#include "cli/commands.h"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>

#include "cli/job_view.h"
#include "cli/uploader.h"
#include "cli/watch.h"
#include "common/file_util.h"
#include "common/net/sha256.h"
#include "common/safetensors.h"

namespace bitfleet::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kStatuses[] = {"queued", "running", "succeeded", "failed", "cancelled"};

std::string time_text(const json& unix_seconds) {
  if (!unix_seconds.is_number()) return "";
  std::time_t t = unix_seconds.get<std::time_t>();
  std::tm local{};
  localtime_r(&t, &local);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &local);
  return text;
}

std::string progress_cell(const json& job) {
  if (job.value("status", "") != "running") return "";
  return std::to_string(static_cast<int>(job_fraction(job) * 100)) + "%";
}

void print_json_list(Context& ctx, const std::vector<json>& items) { ctx.out << json(items).dump(2) << "\n"; }

// Trainable parameters of an artifact: every tensor in it was tuned (biases and the head).
Result<int64_t> artifact_parameters(const std::string& path) {
  BITFLEET_ASSIGN_OR_RETURN(auto file, safetensors::File::open(path));
  int64_t total = 0;
  for (const auto& tensor : file.tensors()) total += tensor.numel();
  return total;
}

}  // namespace

int fail(Context& ctx, const Status& status) {
  ctx.err << "bitfleet: " << status.message() << "\n";
  return exit_code_for(status);
}

int files_command(Context& ctx, common::Flags& flags, const Args& args) {
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (args.empty() || (args[0] == "upload" && args.size() < 2) || (args[0] == "list" && args.size() != 1) ||
      (args[0] != "upload" && args[0] != "list")) {
    return fail(ctx, invalid_argument("usage: bitfleet files upload PATH… | bitfleet files list"));
  }
  if (args[0] == "list") {
    auto files = ctx.api.list("/v1/files", "", SIZE_MAX);
    if (!files.is_ok()) return fail(ctx, files.status());
    if (ctx.json) {
      print_json_list(ctx, *files);
      return kExitOk;
    }
    TextTable table({"ID", "FILENAME", "ROWS", "BYTES", "CREATED"});
    for (const auto& f : *files) {
      table.add({f["id"], f["filename"], std::to_string(f.value("rows", 0)), std::to_string(f.value("bytes", 0)),
                 time_text(f["created_at"])});
    }
    table.print(ctx.out);
    return kExitOk;
  }
  Uploader uploader(ctx.api);
  TextTable table({"PATH", "FILE"});
  std::vector<json> ids;
  for (size_t i = 1; i < args.size(); ++i) {
    auto id = uploader.file_id(args[i]);
    if (!id.is_ok()) return fail(ctx, id.status());
    table.add({args[i], *id});
    ids.push_back({{"path", args[i]}, {"id", *id}});
  }
  if (ctx.json) {
    print_json_list(ctx, ids);
  } else {
    table.print(ctx.out);
  }
  return kExitOk;
}

int jobs_command(Context& ctx, common::Flags& flags, const Args& args) {
  const std::string status = flags.string("status", "");
  const auto limit = static_cast<size_t>(flags.integer("limit", 1, 1000000, 100));
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (!args.empty()) return fail(ctx, invalid_argument("usage: bitfleet jobs [--status S] [--limit N]"));
  if (!status.empty() && std::find(std::begin(kStatuses), std::end(kStatuses), status) == std::end(kStatuses)) {
    return fail(ctx, invalid_argument("--status must be queued, running, succeeded, failed or cancelled"));
  }
  bool more = false;
  auto jobs = ctx.api.list("/v1/jobs", status.empty() ? "" : "status=" + status, limit, &more);
  if (!jobs.is_ok()) return fail(ctx, jobs.status());
  if (ctx.json) {
    print_json_list(ctx, *jobs);
    return kExitOk;
  }
  TextTable table({"JOB", "NAME", "STATUS", "PROGRESS", "METRIC", "VALUE", "CREATED"});
  std::vector<std::string> waiting;
  for (const auto& job : *jobs) {
    auto metric = headline_metric(job);
    const std::string id = job["id"];
    table.add({id, job_name(job) == id ? "" : job_name(job), job["status"], progress_cell(job),
               metric ? metric->first : "", metric ? format_number(metric->second) : "", time_text(job["created_at"])});
    if (const std::string why = waiting_reason(job); !why.empty()) waiting.push_back(id + ": " + why);
  }
  table.print(ctx.out);
  if (!waiting.empty()) {
    ctx.out << "\nqueued, and no live worker group can run them:\n";
    for (const auto& w : waiting) ctx.out << "  " << w << "\n";
  }
  if (more) ctx.err << "(more jobs than --limit " << limit << "; newest first)\n";
  return kExitOk;
}

int watch_ids(Context& ctx, const std::vector<std::string>& ids, double interval_seconds) {
  WatchOptions options;
  options.interval = std::chrono::milliseconds(static_cast<int64_t>(interval_seconds * 1000));
  options.terminal = !ctx.json && is_ansi_terminal(STDOUT_FILENO, &options.width, &options.height);
  std::ostream& live = ctx.json ? ctx.err : ctx.out;  // --json keeps stdout for the final JSON
  auto watched = watch_jobs(ctx.api, ids, options, ctx.interrupted, live);
  if (!watched.is_ok()) return fail(ctx, watched.status());
  if (ctx.json) {
    print_json_list(ctx, watched->jobs);
  } else {
    print_summary(watched->jobs, ctx.out);
  }
  if (watched->interrupted) {
    ctx.err << "bitfleet: stopped watching; the jobs go on\n";
    return kExitInterrupted;
  }
  for (const auto& job : watched->jobs) {
    if (job.value("status", "") != "succeeded") return kExitJobsUnsuccessful;
  }
  return kExitOk;
}

// A sweep id ("sweep-…") stands for its variants.
Result<std::vector<std::string>> expand_sweeps(Context& ctx, const Args& args) {
  std::vector<std::string> ids;
  for (const auto& id : args) {
    if (id.rfind("sweep-", 0) != 0) {
      ids.push_back(id);
      continue;
    }
    BITFLEET_ASSIGN_OR_RETURN(json sweep, ctx.api.get("/v1/sweeps/" + url_encode(id)));
    for (const auto& v : sweep["variants"]) ids.push_back(v["job"].get<std::string>());
  }
  return ids;
}

int watch_command(Context& ctx, common::Flags& flags, const Args& args) {
  const bool all = flags.boolean("all");
  const double interval = flags.number("interval", 0.1, 3600, 2.0);
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (all == !args.empty()) return fail(ctx, invalid_argument("usage: bitfleet watch JOB… | bitfleet watch --all"));
  auto expanded = expand_sweeps(ctx, args);
  if (!expanded.is_ok()) return fail(ctx, expanded.status());
  std::vector<std::string> ids = std::move(expanded).value();
  if (all) {  // every job not finished yet, oldest first
    for (const char* status : {"running", "queued"}) {
      auto jobs = ctx.api.list("/v1/jobs", std::string("status=") + status, SIZE_MAX);
      if (!jobs.is_ok()) return fail(ctx, jobs.status());
      for (auto it = jobs->rbegin(); it != jobs->rend(); ++it) ids.push_back((*it)["id"]);
    }
    if (ids.empty()) {
      ctx.err << "no queued or running jobs\n";
      return kExitOk;
    }
  }
  return watch_ids(ctx, ids, interval);
}

int events_command(Context& ctx, common::Flags& flags, const Args& args) {
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (args.size() != 1) return fail(ctx, invalid_argument("usage: bitfleet events JOB"));
  std::vector<json> events;
  for (int64_t after = 0;;) {
    auto page = ctx.api.get("/v1/jobs/" + url_encode(args[0]) + "/events?limit=1000&after=" + std::to_string(after));
    if (!page.is_ok()) return fail(ctx, page.status());
    for (auto& e : (*page)["data"]) events.push_back(std::move(e));
    if (!page->value("has_more", false) || events.empty()) break;
    after = events.back()["seq"].get<int64_t>();
  }
  if (ctx.json) {
    print_json_list(ctx, events);
    return kExitOk;
  }
  for (const auto& e : events) {
    ctx.out << time_text(e["created_at"]) << "  " << e["type"].get<std::string>() << "  " << e["data"].dump() << "\n";
  }
  return kExitOk;
}

int cancel_command(Context& ctx, common::Flags& flags, const Args& args) {
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (args.empty()) return fail(ctx, invalid_argument("usage: bitfleet cancel JOB…"));
  int code = kExitOk;
  std::vector<json> cancelled;
  for (const auto& id : args) {
    auto job = ctx.api.post("/v1/jobs/" + url_encode(id) + "/cancel", json::object(), "");
    if (!job.is_ok()) {
      code = std::max(code, fail(ctx, Status(job.status().code(), id + ": " + job.status().message())));
      continue;
    }
    cancelled.push_back(*job);
    if (!ctx.json) ctx.out << id << " " << (*job)["status"].get<std::string>() << "\n";
  }
  if (ctx.json) print_json_list(ctx, cancelled);
  return code;
}

int download_command(Context& ctx, common::Flags& flags, const Args& args) {
  const std::string dir = flags.string("out", ".");
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (args.empty()) return fail(ctx, invalid_argument("usage: bitfleet download JOB… -o DIR"));
  if (Status s = common::make_directories(dir); !s.is_ok()) return fail(ctx, invalid_argument("-o: " + s.message()));
  int code = kExitOk;
  TextTable table({"JOB", "NAME", "METRIC", "VALUE", "SECONDS", "TRAINABLE", "ARTIFACT"});
  std::vector<json> downloaded;
  for (const auto& id : args) {
    // A sweep's artifact is its best variant's, saved under the sweep's name.
    const bool sweep = id.rfind("sweep-", 0) == 0;
    Result<json> job = sweep ? ctx.api.get("/v1/sweeps/" + url_encode(id)) : ctx.api.get("/v1/jobs/" + url_encode(id));
    if (sweep && job.is_ok()) {
      job = (*job)["best"].is_object() ? ctx.api.get("/v1/jobs/" + url_encode((*job)["best"]["job"].get<std::string>()))
                                       : Result<json>(Status(StatusCode::kFailedPrecondition, "has no succeeded variant yet"));
    }
    Status s = job.is_ok() ? Status::ok() : job.status();
    if (s.is_ok() && !(*job)["artifact"].is_object()) {
      s = Status(StatusCode::kFailedPrecondition, "has no artifact (it is " + (*job)["status"].get<std::string>() + ")");
    }
    const std::string path = (fs::path(dir) / (id + ".safetensors")).string();
    if (s.is_ok()) s = ctx.api.download("/v1/jobs/" + url_encode((*job)["id"].get<std::string>()) + "/artifact", path);
    if (s.is_ok()) {
      auto digest = net::sha256_file(path);
      if (!digest.is_ok() || *digest != (*job)["artifact"]["sha256"].get<std::string>()) {
        s = Status(StatusCode::kDataLoss, "the artifact's sha256 does not match the job's; " + path + " removed");
        std::filesystem::remove(path);
      }
    }
    auto parameters = s.is_ok() ? artifact_parameters(path) : Result<int64_t>(s);
    if (!parameters.is_ok()) {
      code = std::max(code, fail(ctx, Status(parameters.status().code(), id + ": " + parameters.status().message())));
      continue;
    }
    auto metric = headline_metric(*job);
    auto seconds = job_seconds(*job);
    table.add({id, job_name(*job) == id ? "" : job_name(*job), metric ? metric->first : "",
               metric ? format_number(metric->second) : "", seconds ? format_number(*seconds, 0) : "",
               std::to_string(*parameters), path});
    downloaded.push_back({{"job", id}, {"path", path}, {"trainable_parameters", *parameters}, {"metrics", (*job)["metrics"]}});
  }
  if (ctx.json) {
    print_json_list(ctx, downloaded);
  } else if (table.size() > 0) {
    table.print(ctx.out);
  }
  return code;
}

int workers_command(Context& ctx, common::Flags& flags, const Args& args) {
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (!args.empty()) return fail(ctx, invalid_argument("usage: bitfleet workers"));
  auto workers = ctx.api.list("/v1/workers", "", SIZE_MAX);
  if (!workers.is_ok()) return fail(ctx, workers.status());
  if (ctx.json) {
    print_json_list(ctx, *workers);
    return kExitOk;
  }
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  TextTable table({"GROUP", "NAME", "BACKBONE", "DEVICE", "DTYPE", "RANKS", "SLOTS", "FREE", "STATUS", "HEARTBEAT"});
  for (const auto& w : *workers) {
    table.add({w["id"], w["name"], w["backbone"], w["device"], w.value("dtype", ""),
               std::to_string(w.value("ranks", 0)),
               std::to_string(w.value("slots", 0)), std::to_string(w.value("free_slots", 0)), w["status"],
               std::to_string(now - w.value("last_heartbeat_at", now)) + "s ago"});
  }
  table.print(ctx.out);
  return kExitOk;
}

}  // namespace bitfleet::cli
