#include "common/sweep_spec.h"

#include <algorithm>

#include "common/json_fields.h"

namespace bitfleet::common {
namespace {

using nlohmann::json;

const json& hyperparameter_names() {
  static const json names = to_json(Hyperparameters{});
  return names;
}

std::string known_hyperparameters() {
  std::string out;
  for (const auto& [name, value] : hyperparameter_names().items()) {
    if (name != "metric_for_best") out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

// The base request's JSON with the point's values among its hyperparameters.
json with_point(const json& base, const json& point, const std::string& metric) {
  json r = base;
  if (!r.contains("hyperparameters") || !r["hyperparameters"].is_object()) r["hyperparameters"] = json::object();
  for (const auto& [key, value] : point.items()) r["hyperparameters"][key] = value;
  if (!metric.empty()) r["hyperparameters"]["metric_for_best"] = metric;
  return r;
}

// A field error's message without its "field: " prefix.
std::string bare(const Status& s) {
  const std::string prefix = s.field() + ": ";
  return s.message().rfind(prefix, 0) == 0 ? s.message().substr(prefix.size()) : s.message();
}

Status parse_objective(const json& objective, SweepSpec& spec) {
  const json given = objective.is_null() ? json::object() : objective;  // JsonFields keeps a reference
  JsonFields o(given, "objective");
  spec.metric = o.string("metric", spec.base.hyperparameters.metric_for_best, 64);
  const std::string mode = o.string("mode", "", 8, true);
  BITFLEET_RETURN_IF_ERROR(o.finish());
  const auto& names = task_metric_names(spec.base.task.type);
  if (std::find(names.begin(), names.end(), spec.metric) == names.end()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    return invalid_argument("objective.metric: " + std::string(task_type_name(spec.base.task.type)) + " reports " + known +
                                ", not \"" + spec.metric + "\"",
                            "objective.metric");
  }
  spec.minimise = metric_minimised(spec.metric);
  const std::string want = spec.minimise ? "min" : "max";
  if (!mode.empty() && mode != want) {
    return invalid_argument("objective.mode: " + spec.metric + " is " + (spec.minimise ? "minimised" : "maximised") +
                                "; mode must be \"" + want + "\" (or left out)",
                            "objective.mode");
  }
  return Status::ok();
}

// One grid entry: a hyperparameter and its values, each checked alone against the base.
Status parse_grid_entry(const std::string& key, const json& values, const json& base, FileRefs refs,
                        int64_t max_variants, SweepSpec& spec) {
  const std::string at = "grid." + key;
  if (key == "metric_for_best") return invalid_argument(at + ": the sweep's objective.metric sets it", at);
  if (!hyperparameter_names().contains(key)) {
    return invalid_argument(at + ": not a hyperparameter (one of " + known_hyperparameters() + ")", at);
  }
  if (!values.is_array() || values.empty() || static_cast<int64_t>(values.size()) > max_variants) {
    return invalid_argument(at + ": must be a list of 1 to " + std::to_string(max_variants) + " values", at);
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string item = at + "[" + std::to_string(i) + "]";
    auto parsed = parse_job_request(with_point(base, {{key, values[i]}}, ""), refs);
    if (!parsed.is_ok()) return invalid_argument(item + ": " + bare(parsed.status()), item);
    for (size_t k = 0; k < i; ++k) {
      if (values[k] == values[i]) return invalid_argument(item + ": repeats " + at + "[" + std::to_string(k) + "]", item);
    }
  }
  spec.grid.emplace_back(key, std::vector<json>(values.begin(), values.end()));
  return Status::ok();
}

}  // namespace

std::vector<json> SweepSpec::points() const {
  std::vector<json> out = {json::object()};
  for (const auto& [key, values] : grid) {
    std::vector<json> next;
    for (const auto& partial : out) {
      for (const auto& v : values) {
        json p = partial;
        p[key] = v;
        next.push_back(std::move(p));
      }
    }
    out = std::move(next);
  }
  return out;
}

Result<JobRequest> SweepSpec::variant(const json& point) const {
  return parse_job_request(with_point(to_json(base), point, metric), FileRefs::kLocalPaths);
}

Result<SweepSpec> parse_sweep_request(const json& body, FileRefs refs, int64_t max_variants) {
  JsonFields f(body, "");
  const json& base = f.raw("base");
  const json& grid = f.raw("grid");
  const json& objective = f.raw("objective");
  const std::string strategy = f.string("strategy", "grid", 32);
  const int eta = static_cast<int>(f.integer("eta", 2, 16, 3));
  if (f.ok() && !base.is_object()) f.fail("base", "must be a job request (an object)");
  if (f.ok() && (!grid.is_object() || grid.empty())) {
    f.fail("grid", "must be an object of hyperparameter names, each with a list of values");
  }
  if (f.ok() && strategy != "grid" && strategy != "successive_halving") {
    f.fail("strategy", "must be grid or successive_halving, got \"" + strategy.substr(0, 40) + "\"");
  }
  if (f.ok() && !objective.is_null() && !objective.is_object()) f.fail("objective", "must be an object {metric, mode}");
  BITFLEET_RETURN_IF_ERROR(f.finish());

  SweepSpec spec;
  BITFLEET_ASSIGN_OR_RETURN(spec.base, parse_job_request(base, refs, "base"));
  BITFLEET_RETURN_IF_ERROR(parse_objective(objective, spec));
  spec.strategy = strategy == "grid" ? SweepStrategy::kGrid : SweepStrategy::kSuccessiveHalving;
  spec.eta = eta;
  if (spec.strategy == SweepStrategy::kSuccessiveHalving && spec.base.validation_file.empty()) {
    return invalid_argument("strategy: successive_halving compares the variants' evaluations; base.validation_file is needed",
                            "strategy");
  }
  int64_t variants = 1;
  for (const auto& [key, values] : grid.items()) {
    BITFLEET_RETURN_IF_ERROR(parse_grid_entry(key, values, base, refs, max_variants, spec));
    variants *= static_cast<int64_t>(values.size());
    if (variants > max_variants) {
      return invalid_argument("grid: more than " + std::to_string(max_variants) +
                                  " variants (the product of the lists' lengths); split the sweep",
                              "grid");
    }
  }
  // Each value passed alone; a combination may still conflict.
  for (const json& point : spec.points()) {
    auto job = spec.variant(point);
    if (!job.is_ok()) return invalid_argument("grid: the variant " + point.dump() + " is not a valid job: " + job.status().message(), "grid");
  }
  return spec;
}

json to_json(const SweepSpec& spec) {
  json grid = json::object();
  for (const auto& [key, values] : spec.grid) grid[key] = values;
  return {{"base", to_json(spec.base)},
          {"grid", grid},
          {"objective", {{"metric", spec.metric}, {"mode", spec.minimise ? "min" : "max"}}},
          {"strategy", spec.strategy == SweepStrategy::kGrid ? "grid" : "successive_halving"},
          {"eta", spec.eta}};
}

}  // namespace bitfleet::common
