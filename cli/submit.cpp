// bitfleet submit JOB.json | --manifest tasks.csv: local files uploaded once, jobs created in
// batches under Idempotency-Keys, ids printed as soon as the coordinator has them.
#include <algorithm>
#include <filesystem>
#include <tuple>

#include "cli/commands.h"
#include "cli/job_view.h"
#include "cli/manifest.h"
#include "cli/uploader.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/json_fields.h"

namespace bitfleet::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

Result<json> read_json_file(const std::string& path) {
  BITFLEET_ASSIGN_OR_RETURN(std::string text, common::read_file(path));
  return common::parse_json(text, path);
}

// A job request's train_file / validation_file / test_file that name local files become file ids; values
// that are already ids ("file-…", no such local file) stay.
Status resolve_files(json& request, const fs::path& base_dir, Uploader& uploader, const std::string& where) {
  for (const char* field : common::kFileFields) {
    if (!request.is_object() || !request.contains(field) || !request[field].is_string()) continue;
    const std::string value = request[field].get<std::string>();
    const fs::path local = fs::path(value).is_absolute() ? fs::path(value) : base_dir / value;
    std::error_code ec;
    if (!fs::is_regular_file(local, ec)) {
      if (value.rfind("file-", 0) == 0) continue;
      return invalid_argument(where + field + ": no such file " + local.string() + " (nor a file id)", field);
    }
    BITFLEET_ASSIGN_OR_RETURN(std::string id, uploader.file_id(local.string()));
    request[field] = id;
  }
  return Status::ok();
}

std::string uploads_text(const Uploader& uploader) {
  return std::to_string(uploader.uploaded()) + " uploaded, " + std::to_string(uploader.reused()) +
         " already on the coordinator";
}

int submit_job_file(Context& ctx, const std::string& path, bool watch, double interval) {
  auto body = read_json_file(path);
  if (!body.is_ok()) return fail(ctx, body.status());
  const bool batch = body->is_object() && body->contains("jobs");
  json& jobs = batch ? (*body)["jobs"] : *body;
  Uploader uploader(ctx.api);
  const fs::path base_dir = fs::absolute(path).parent_path();
  if (batch && !jobs.is_array()) return fail(ctx, invalid_argument(path + ": jobs must be a list of job requests"));
  for (size_t i = 0; i < (batch ? jobs.size() : 1); ++i) {
    json& request = batch ? jobs[i] : jobs;
    const std::string where = path + ": " + (batch ? "jobs[" + std::to_string(i) + "]." : "");
    if (Status s = resolve_files(request, base_dir, uploader, where); !s.is_ok()) return fail(ctx, s);
  }
  auto created = ctx.api.post(batch ? "/v1/jobs/batch" : "/v1/jobs", *body, new_idempotency_key());
  if (!created.is_ok()) return fail(ctx, created.status());
  std::vector<json> list = batch ? (*created)["data"].get<std::vector<json>>() : std::vector<json>{*created};
  std::vector<std::string> ids;
  for (const json& job : list) ids.push_back(job["id"].get<std::string>());
  if (ctx.json) {
    ctx.out << (batch ? (*created)["data"] : *created).dump(2) << "\n";
  } else {
    for (const auto& id : ids) ctx.out << id << "\n";
  }
  return watch ? watch_ids(ctx, ids, interval) : kExitOk;
}

// A failed batch of a manifest: the coordinator's field for jobs[i] becomes the manifest's row
// and column.
Status locate(const Status& refused, const std::vector<ManifestTask>& tasks, size_t first, const std::string& manifest) {
  const std::string& field = refused.field();
  if (field.rfind("jobs[", 0) != 0) return refused;
  auto row = common::parse_int64(field.substr(5, field.find(']') - 5), "field");
  if (!row.is_ok() || *row < 0 || first + static_cast<size_t>(*row) >= tasks.size()) return refused;
  const size_t index = first + static_cast<size_t>(*row);
  const std::string rest = field.substr(field.find(']') + 1);
  const std::string column = manifest_column(rest.empty() ? rest : rest.substr(1));
  return Status(refused.code(), manifest + ":" + std::to_string(tasks[index].line) + ": row " +
                                    std::to_string(tasks[index].row) +
                                    (column.empty() ? "" : ", column \"" + column + "\"") + ": " + refused.message());
}

int submit_manifest(Context& ctx, const std::string& manifest, const json& defaults, size_t batch_size, bool watch,
                    double interval) {
  auto tasks = read_manifest(manifest, defaults);
  if (!tasks.is_ok()) return fail(ctx, tasks.status());
  Uploader uploader(ctx.api);
  for (ManifestTask& task : *tasks) {
    for (const char* field : common::kFileFields) {
      if (!task.request.contains(field)) continue;
      auto id = uploader.file_id(task.request[field].get<std::string>());
      if (!id.is_ok()) return fail(ctx, id.status());
      task.request[field] = *id;
    }
  }
  if (!ctx.json) ctx.err << "files: " << uploads_text(uploader) << "\n";

  // Plain rows go in batches of jobs; sweep rows (a '|' cell) each as a sweep.
  std::vector<ManifestTask> plain, sweeps;
  for (ManifestTask& task : *tasks) (task.grid.empty() ? plain : sweeps).push_back(std::move(task));
  std::vector<std::tuple<int64_t, std::string, std::string>> rows;  // row, name, job or sweep id
  json created = json::array();
  std::vector<std::string> ids;  // what --watch follows: the jobs and every sweep's variants
  auto print_rows = [&] {
    std::sort(rows.begin(), rows.end());
    TextTable table({"ROW", "NAME", "JOB"});
    for (const auto& [row, name, id] : rows) table.add({std::to_string(row), name, id});
    table.print(ctx.out);
  };
  auto refused = [&](const Status& s) {
    if (!ctx.json) print_rows();
    ctx.err << "bitfleet: created " << rows.size() << " of " << plain.size() + sweeps.size() << " rows' jobs and sweeps"
            << (rows.empty() ? "" : " (listed above; they stand)") << " before the coordinator refused one\n";
    return fail(ctx, s);
  };
  for (size_t first = 0; first < plain.size(); first += batch_size) {
    json batch = {{"jobs", json::array()}};
    for (size_t i = first; i < std::min(plain.size(), first + batch_size); ++i) batch["jobs"].push_back(plain[i].request);
    auto jobs = ctx.api.post("/v1/jobs/batch", batch, new_idempotency_key());
    if (!jobs.is_ok()) return refused(locate(jobs.status(), plain, first, manifest));
    for (const json& job : (*jobs)["data"]) {
      const ManifestTask& task = plain[ids.size()];
      ids.push_back(job["id"].get<std::string>());
      rows.emplace_back(task.row, task.name, ids.back());
      created.push_back(job);
    }
  }
  for (const ManifestTask& task : sweeps) {
    auto sweep = ctx.api.post("/v1/sweeps", {{"base", task.request}, {"grid", task.grid}}, new_idempotency_key());
    if (!sweep.is_ok()) {
      return refused(Status(sweep.status().code(), manifest + ":" + std::to_string(task.line) + ": row " +
                                                       std::to_string(task.row) + " (a sweep): " + sweep.status().message()));
    }
    for (const auto& v : (*sweep)["variants"]) ids.push_back(v["job"].get<std::string>());
    rows.emplace_back(task.row, task.name, (*sweep)["id"].get<std::string>());
    created.push_back(*sweep);
  }
  if (ctx.json) {
    ctx.out << created.dump(2) << "\n";
  } else {
    print_rows();
    ctx.err << "created " << plain.size() << " jobs and " << sweeps.size() << " sweeps (" << ids.size() - plain.size()
            << " variants) from " << manifest << "\n";
  }
  return watch ? watch_ids(ctx, ids, interval) : kExitOk;
}

}  // namespace

int submit_command(Context& ctx, common::Flags& flags, const Args& args) {
  auto manifest = flags.optional_string("manifest");
  auto defaults_path = flags.optional_string("defaults");
  auto backbone = flags.optional_string("backbone");
  const auto batch_size = static_cast<size_t>(flags.integer("batch-size", 1, 1000, 100));
  const bool watch = flags.boolean("watch");
  const double interval = flags.number("interval", 0.1, 3600, 2.0);
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (manifest.has_value() == (args.size() == 1) || args.size() > 1) {
    return fail(ctx, invalid_argument("usage: bitfleet submit JOB.json | bitfleet submit --manifest tasks.csv"));
  }
  if (!manifest) {
    if (defaults_path || backbone) return fail(ctx, invalid_argument("--defaults and --backbone go with --manifest"));
    return submit_job_file(ctx, args[0], watch, interval);
  }
  json defaults = json::object();
  if (defaults_path) {
    auto read = read_json_file(*defaults_path);
    if (!read.is_ok()) return fail(ctx, read.status());
    if (!read->is_object()) return fail(ctx, invalid_argument(*defaults_path + ": must be a JSON object (a job request)"));
    defaults = std::move(read).value();
    // Paths in the defaults are relative to the defaults file.
    for (const char* field : common::kFileFields) {
      if (defaults.contains(field) && defaults[field].is_string() && fs::path(defaults[field].get<std::string>()).is_relative()) {
        defaults[field] = (fs::absolute(*defaults_path).parent_path() / defaults[field].get<std::string>()).string();
      }
    }
  }
  if (backbone) defaults["backbone"] = *backbone;
  return submit_manifest(ctx, *manifest, defaults, batch_size, watch, interval);
}

namespace {

// --grid KEY=V1,V2,…: each value JSON when it parses as JSON (numbers, true, false), else a string
// (bias_terms' "all", "query+intermediate").
Result<json> parse_grid(const std::vector<std::string>& specs) {
  json grid = json::object();
  for (const auto& spec : specs) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return invalid_argument("--grid: \"" + spec + "\" must be KEY=VALUE[,VALUE…]", "grid");
    }
    const std::string key = spec.substr(0, eq);
    if (grid.contains(key)) return invalid_argument("--grid: " + key + " is given twice", "grid");
    json values = json::array();
    for (size_t start = eq + 1; start <= spec.size();) {
      const size_t comma = std::min(spec.find(',', start), spec.size());
      const std::string text = spec.substr(start, comma - start);
      if (text.empty()) return invalid_argument("--grid: " + key + " has an empty value", "grid");
      auto parsed = common::parse_json(text, "--grid");
      values.push_back(parsed.is_ok() && !parsed->is_object() && !parsed->is_array() ? *parsed : json(text));
      start = comma + 1;
    }
    grid[key] = std::move(values);
  }
  return grid;
}

void print_sweep(Context& ctx, const json& sweep) {
  ctx.out << sweep["id"].get<std::string>() << " (" << sweep["strategy"].get<std::string>() << ", "
          << sweep["variants"].size() << " variants, objective " << sweep["objective"]["metric"].get<std::string>() << ")\n";
  TextTable table({"JOB", "HYPERPARAMETERS", "STATUS"});
  for (const auto& v : sweep["variants"]) table.add({v["job"], v["hyperparameters"].dump(), v["status"]});
  table.print(ctx.out);
}

}  // namespace

int sweep_command(Context& ctx, common::Flags& flags, const Args& args) {
  const std::vector<std::string> grid_specs = flags.strings("grid");
  auto metric = flags.optional_string("metric");
  auto mode = flags.optional_string("mode");
  const std::string strategy = flags.string("strategy", "grid");
  const int64_t eta = flags.integer("eta", 2, 16, 3);
  const bool watch = flags.boolean("watch");
  const double interval = flags.number("interval", 0.1, 3600, 2.0);
  if (Status s = flags.finish(); !s.is_ok()) return fail(ctx, s);
  if (args.size() != 1 || grid_specs.empty()) {
    return fail(ctx, invalid_argument("usage: bitfleet sweep JOB.json --grid KEY=V1,V2 [--grid …] [--strategy S] [--watch]"));
  }
  auto base = read_json_file(args[0]);
  if (!base.is_ok()) return fail(ctx, base.status());
  if (!base->is_object()) return fail(ctx, invalid_argument(args[0] + ": must be a JSON object (a job request)"));
  auto grid = parse_grid(grid_specs);
  if (!grid.is_ok()) return fail(ctx, grid.status());
  Uploader uploader(ctx.api);
  if (Status s = resolve_files(*base, fs::absolute(args[0]).parent_path(), uploader, args[0] + ": "); !s.is_ok()) {
    return fail(ctx, s);
  }
  json body = {{"base", *base}, {"grid", *grid}, {"strategy", strategy}, {"eta", eta}};
  if (metric || mode) body["objective"] = json::object();
  if (metric) body["objective"]["metric"] = *metric;
  if (mode) body["objective"]["mode"] = *mode;
  auto created = ctx.api.post("/v1/sweeps", body, new_idempotency_key());
  if (!created.is_ok()) return fail(ctx, created.status());
  if (ctx.json) {
    ctx.out << created->dump(2) << "\n";
  } else {
    print_sweep(ctx, *created);
  }
  if (!watch) return kExitOk;
  std::vector<std::string> ids;
  for (const auto& v : (*created)["variants"]) ids.push_back(v["job"].get<std::string>());
  const int code = watch_ids(ctx, ids, interval);
  auto done = ctx.api.get("/v1/sweeps/" + (*created)["id"].get<std::string>());
  if (done.is_ok() && (*done)["best"].is_object() && !ctx.json) {
    ctx.out << "best: " << (*done)["best"]["job"].get<std::string>() << " " << (*done)["best"]["hyperparameters"].dump()
            << " " << (*done)["best"]["metrics"].dump() << "\n";
  }
  // Variants stopped by successive halving end cancelled by design: the sweep's result counts.
  return done.is_ok() && (*done)["best"].is_object() ? kExitOk : code;
}

}  // namespace bitfleet::cli
