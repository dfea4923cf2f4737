#include "worker/engine/slot_loop.h"

#include <algorithm>
#include <map>

namespace bitfleet::engine {
namespace {

// The slots due for evaluation, evaluated in the report's order; early stopping adds to finished.
Result<std::map<int, Evaluation>> evaluate_due(Trainer& trainer, SlotDriver& driver, StepReport& report) {
  std::map<int, Evaluation> done;
  for (int slot : report.evaluate) {
    BITFLEET_ASSIGN_OR_RETURN(Evaluation e, trainer.evaluate_for_best(slot));
    BITFLEET_RETURN_IF_ERROR(driver.evaluated(slot, e));
    const bool finishing = std::find(report.finished.begin(), report.finished.end(), slot) != report.finished.end();
    if (e.stop && !finishing) report.finished.push_back(slot);
    done.emplace(slot, std::move(e));
  }
  return done;
}

// A finishing slot: its final metrics, its best parameters in place, the test set scored with them.
Result<JobOutcome> outcome_of(Trainer& trainer, int slot, const std::map<int, Evaluation>& evaluations) {
  JobOutcome outcome;
  if (auto it = evaluations.find(slot); it != evaluations.end()) {
    outcome.final_metrics = it->second.metrics;
    outcome.stopped_early = it->second.stop && trainer.progress(slot).step < trainer.progress(slot).total_steps;
  }
  outcome.best = trainer.best(slot);
  trainer.use_best(slot);
  BITFLEET_ASSIGN_OR_RETURN(outcome.test_metrics, trainer.evaluate(slot, Split::kTest));
  return outcome;
}

}  // namespace

nlohmann::json metrics_json(const Metrics& metrics) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, value] : metrics) out[name] = value;
  return out;
}

nlohmann::json evaluation_json(const Evaluation& e, const std::optional<BestEvaluation>& best) {
  nlohmann::json out = {{"step", e.step}, {"epoch", e.epoch}, {"metrics", metrics_json(e.metrics)}, {"seconds", e.seconds}};
  out["best"] = best ? nlohmann::json({{"step", best->step}, {"epoch", best->epoch}, {"metrics", metrics_json(best->metrics)}})
                     : nlohmann::json();
  return out;
}

std::map<std::string, std::string> outcome_metadata(const JobOutcome& o) {
  std::map<std::string, std::string> meta = {{"metrics", metrics_json(o.metrics()).dump()},
                                             {"final_metrics", metrics_json(o.final_metrics).dump()},
                                             {"stopped_early", o.stopped_early ? "true" : "false"}};
  if (o.best) meta["best_step"] = std::to_string(o.best->step);
  if (!o.test_metrics.empty()) meta["test_metrics"] = metrics_json(o.test_metrics).dump();
  return meta;
}

Status run_slot_loop(Trainer& trainer, SlotDriver& driver) {
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(Turn turn, driver.next_turn(trainer));
    for (int slot : turn.drop) trainer.release(slot);
    for (auto& a : turn.admit) {
      const std::string* checkpoint = a.checkpoint.empty() ? nullptr : &a.checkpoint;
      const Status outcome = trainer.admit(a.slot, a.job, checkpoint);
      driver.admitted(a, outcome);
    }
    if (turn.stop) return Status::ok();
    if (trainer.active_count() == 0) continue;
    BITFLEET_ASSIGN_OR_RETURN(StepReport report, trainer.step());
    for (const auto& [slot, reason] : report.failed) {
      driver.failed(slot, reason);
      trainer.release(slot);
    }
    // Evaluations before the driver sees the step, so a checkpoint it takes holds their best.
    BITFLEET_ASSIGN_OR_RETURN(auto evaluations, evaluate_due(trainer, driver, report));
    BITFLEET_RETURN_IF_ERROR(driver.stepped(report));
    for (int slot : report.finished) {
      BITFLEET_ASSIGN_OR_RETURN(JobOutcome outcome, outcome_of(trainer, slot, evaluations));
      BITFLEET_RETURN_IF_ERROR(driver.finished(slot, outcome));
      trainer.release(slot);
    }
  }
}

}  // namespace bitfleet::engine
