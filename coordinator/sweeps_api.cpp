// The public API's sweeps (/v1/sweeps): create (atomically, idempotently), list, get, cancel, the
// best variant's artifact; and successive halving, decided as the variants' evaluations arrive.
#include <algorithm>
#include <cmath>
#include <variant>

#include "common/net/problem.h"
#include "common/net/sha256.h"
#include "common/sweep_spec.h"
#include "coordinator/handler_util.h"
#include "coordinator/resources.h"
#include "coordinator/service.h"

namespace bitfleet::coordinator {

using net::problem;
using nlohmann::json;

namespace {

// A variant's value of the objective at its `rung`-th evaluation (1-based), if it has one.
std::optional<double> rung_value(const JobRecord& v, size_t rung, const std::string& metric) {
  if (v.evaluations.size() < rung) return std::nullopt;
  const json& m = v.evaluations[rung - 1]["metrics"];
  if (!m.is_object() || !m.contains(metric) || !m[metric].is_number()) return std::nullopt;
  return m[metric].get<double>();
}

}  // namespace

Result<std::optional<SweepRecord>> Service::visible_sweep(const std::string& id, const Caller& c) {
  BITFLEET_ASSIGN_OR_RETURN(auto sweep, store_->get_sweep(id));
  if (sweep && !c.sees(sweep->tenant)) return std::optional<SweepRecord>();
  return sweep;
}

Response Service::create_sweep(Request& r, const Caller& c) {
  auto spec = decode<common::SweepSpec>(r, [&](const json& body) -> Result<common::SweepSpec> {
    BITFLEET_ASSIGN_OR_RETURN(common::SweepSpec parsed,
                              common::parse_sweep_request(body, common::FileRefs::kFileIds, options_.max_sweep_variants));
    // The base's files: present, the caller's, with the task's columns.
    BITFLEET_RETURN_IF_ERROR(validate_job(body["base"], c, "base").status());
    return parsed;
  });
  if (!spec) return spec.problem();
  auto key = idempotency_key(r, net::sha256_hex(r.body));
  if (!key.is_ok()) return problem(key.status(), r.path, 400);
  const int64_t now = now_ms();
  SweepRecord sweep{.id = new_id("sweep-"), .tenant = c.principal.tenant, .spec = common::to_json(*spec), .created_at = now};
  std::vector<JobRecord> variants;
  for (const json& point : spec->points()) {
    auto request = spec->variant(point);
    if (!request.is_ok()) return problem(request.status(), r.path);
    JobRecord job;
    job.id = new_id("job-");
    job.request = std::move(request).value();
    job.created_at = now;
    variants.push_back(std::move(job));
  }
  auto stored = store_->create_sweep(std::move(sweep), std::move(variants), *key);
  if (!stored.is_ok()) return created_jobs_problem(stored.status(), r.path, c);
  if (!stored->replayed) metrics_.sweep_created(static_cast<int64_t>(stored->variants.size()));
  return json_response(201, sweep_json(stored->sweep, stored->variants));
}

Response Service::list_sweeps(Request& r, const Caller& c) {
  auto limit = int_param(r, "limit", 1, kMaxPage, kDefaultPage);
  if (!limit.is_ok()) return problem(limit.status(), r.path, 400);
  const std::string after = r.query.count("after") ? r.query.at("after") : "";
  if (!after.empty()) {
    auto cursor = visible_sweep(after, c);
    if (!cursor.is_ok()) return problem(cursor.status(), r.path);
    if (!*cursor) {
      return problem(400, "", "after: \"" + after.substr(0, 64) + "\" is not a sweep id from a previous page", "after", r.path);
    }
  }
  auto page = store_->list_sweeps(c.principal.role == Role::kAdmin ? "" : c.principal.tenant, *limit, after);
  if (!page.is_ok()) return problem(page.status(), r.path);
  json data = json::array();
  for (const auto& sweep : page->data) {
    auto variants = store_->sweep_variants(sweep.id);
    if (!variants.is_ok()) return problem(variants.status(), r.path);
    data.push_back(sweep_json(sweep, *variants));
  }
  return json_response(200, {{"object", "list"}, {"data", data}, {"has_more", page->has_more}});
}

std::variant<Service::SweepView, Response> Service::find_sweep(Request& r, const Caller& c) {
  auto sweep = visible_sweep(r.params["id"], c);
  if (!sweep.is_ok()) return problem(sweep.status(), r.path);
  if (!*sweep) return problem(404, "", "no sweep " + r.params["id"], "id", r.path);
  auto variants = store_->sweep_variants((*sweep)->id);
  if (!variants.is_ok()) return problem(variants.status(), r.path);
  return SweepView{std::move(**sweep), std::move(variants).value()};
}

Response Service::get_sweep(Request& r, const Caller& c) {
  auto found = find_sweep(r, c);
  if (auto* refused = std::get_if<Response>(&found)) return std::move(*refused);
  const SweepView& view = std::get<SweepView>(found);
  return json_response(200, sweep_json(view.sweep, view.variants));
}

Response Service::cancel_sweep(Request& r, const Caller& c) {
  auto found = find_sweep(r, c);
  if (auto* refused = std::get_if<Response>(&found)) return std::move(*refused);
  const std::string& id = std::get<SweepView>(found).sweep.id;
  auto cancelled = store_->cancel_sweep(id, now_ms());
  if (!cancelled.is_ok()) return problem(cancelled.status(), r.path);
  auto variants = store_->sweep_variants(id);  // as the cancellation left them
  if (!variants.is_ok()) return problem(variants.status(), r.path);
  return json_response(200, sweep_json(*cancelled, *variants));
}

Response Service::sweep_artifact(Request& r, const Caller& c) {
  auto found = find_sweep(r, c);
  if (auto* refused = std::get_if<Response>(&found)) return std::move(*refused);
  const SweepView& view = std::get<SweepView>(found);
  const JobRecord* best = best_variant(view.sweep, view.variants);
  if (best == nullptr) {
    return problem(409, "", "sweep " + view.sweep.id + " has no succeeded variant yet", "id", r.path);
  }
  return artifact_response(*best);
}

// Successive halving, rung by rung: rung k is a variant's k-th evaluation. Rung k is decided once
// every variant still in the running at k that has started has reached it (or finished): the top
// ceil(n / eta) by the objective go on, the others are cancelled at once, freeing their slots for
// the queue. A variant that reaches a decided rung later (it was queued) goes on only if it is at
// least as good as the rung's threshold (the last kept value). Called whenever a variant reports an
// evaluation or finishes; the store applies a decision only over the rungs it was made from.
void Service::halve(const std::string& sweep_id) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto sweep = store_->get_sweep(sweep_id);
    if (!sweep.is_ok() || !*sweep || (*sweep)->cancelled) return;
    const json& spec = (*sweep)->spec;
    if (spec.value("strategy", "") != "successive_halving") return;
    auto variants = store_->sweep_variants(sweep_id);
    if (!variants.is_ok()) return;
    json rungs = (*sweep)->rungs;
    std::vector<std::pair<std::string, std::string>> stop;
    if (!next_rungs(spec, *variants, rungs, stop)) return;
    auto updated = store_->update_rungs(sweep_id, (*sweep)->rungs, rungs, stop, now_ms());
    if (!updated.is_ok()) return;
    if (*updated) {
      metrics_.variants_stopped("successive_halving", static_cast<int64_t>(stop.size()));
      return;
    }
  }
}

// The rungs after what `variants` report now; false when nothing changes.
bool Service::next_rungs(const json& spec, const std::vector<JobRecord>& variants, json& rungs,
                         std::vector<std::pair<std::string, std::string>>& stop) {
  const std::string metric = spec["objective"].value("metric", "");
  const double sign = spec["objective"].value("mode", "max") == "min" ? -1.0 : 1.0;
  const int64_t eta = spec.value("eta", int64_t{3});
  auto unfinished = [](const JobRecord* v) { return v->status == kQueued || v->status == kRunning; };
  auto listed = [](const json& list, const std::string& id) { return std::find(list.begin(), list.end(), id) != list.end(); };
  auto reason = [&](size_t rung, double threshold) {
    return "stopped by successive halving at rung " + std::to_string(rung) + " (its evaluation " + std::to_string(rung) +
           "): " + metric + " below the top 1/" + std::to_string(eta) + " (threshold " + std::to_string(threshold) + ")";
  };
  bool changed = false;
  std::vector<const JobRecord*> live;
  for (const auto& v : variants) live.push_back(&v);
  for (size_t k = 1; !live.empty(); ++k) {
    if (k <= rungs.size()) {  // decided: late arrivals against its threshold
      json& rung = rungs[k - 1];
      const double threshold = rung.value("threshold", 0.0);
      for (const JobRecord* v : live) {
        auto value = rung_value(*v, k, metric);
        if (!value || listed(rung["kept"], v->id) || listed(rung["stopped"], v->id)) continue;
        const bool goes_on = sign * *value >= sign * threshold;
        rung[goes_on ? "kept" : "stopped"].push_back(v->id);
        if (!goes_on && unfinished(v)) stop.emplace_back(v->id, reason(k, threshold));
        changed = true;
      }
      std::erase_if(live, [&](const JobRecord* v) { return !listed(rung["kept"], v->id); });
      continue;
    }
    std::vector<std::pair<double, const JobRecord*>> contenders;
    for (const JobRecord* v : live) {
      auto value = rung_value(*v, k, metric);
      if (!value && v->status == kRunning) return changed;  // not there yet: decide when it is
      if (value) contenders.emplace_back(sign * *value, v);
    }
    if (contenders.size() < 2) return changed;
    std::stable_sort(contenders.begin(), contenders.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    const size_t keep = static_cast<size_t>((contenders.size() + eta - 1) / eta);
    const double threshold = sign * contenders[keep - 1].first;
    json rung = {{"rung", k}, {"metric", metric}, {"threshold", threshold}, {"kept", json::array()}, {"stopped", json::array()}};
    for (size_t i = 0; i < contenders.size(); ++i) {
      rung[i < keep ? "kept" : "stopped"].push_back(contenders[i].second->id);
      if (i >= keep && unfinished(contenders[i].second)) stop.emplace_back(contenders[i].second->id, reason(k, threshold));
    }
    rungs.push_back(std::move(rung));
    changed = true;
    std::erase_if(live, [&](const JobRecord* v) { return !listed(rungs.back()["kept"], v->id); });
  }
  return changed;
}

}  // namespace bitfleet::coordinator
