// The sweep request: one base job and a grid of hyperparameter values, expanded into variants —
// ordinary jobs that differ only in those values and train side by side as slots.
//
//   {"base": JOB, "grid": {"learning_rate": [1e-4, 1e-3], "epochs": [5, 10], ...},
//    "objective": {"metric": "mcc", "mode": "max"}, "strategy": "grid" | "successive_halving", "eta": 3}
//
// parse_sweep_request() validates every field and names the one at fault: the base as
// parse_job_request does ("base.task.labels"), each grid value against its hyperparameter's range
// ("grid.learning_rate[1]"), the variant count against the limit ("grid"), the objective's metric
// against what the task reports ("objective.metric"). The objective becomes every variant's
// metric_for_best, so each variant's result is its best evaluation by the sweep's own measure.
// Thread-safety: values.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_spec.h"
#include "common/status.h"

namespace bitfleet::common {

enum class SweepStrategy { kGrid, kSuccessiveHalving };

struct SweepSpec {
  JobRequest base;
  std::vector<std::pair<std::string, std::vector<nlohmann::json>>> grid;  // by hyperparameter name
  std::string metric;      // the objective
  bool minimise = false;   // mode "min" (mse), else "max"
  SweepStrategy strategy = SweepStrategy::kGrid;
  int eta = 3;             // successive halving keeps the top 1/eta at each rung

  // One hyperparameter assignment per variant: the grid's cartesian product, the last key
  // varying fastest.
  std::vector<nlohmann::json> points() const;
  // The job of one point: the base with those hyperparameters and metric_for_best = the objective
  // (every point of a parsed spec gives one).
  Result<JobRequest> variant(const nlohmann::json& point) const;
};

// `max_variants` bounds the grid's product.
Result<SweepSpec> parse_sweep_request(const nlohmann::json& body, FileRefs refs, int64_t max_variants);
nlohmann::json to_json(const SweepSpec& spec);

}  // namespace bitfleet::common
