// The slot loop: what every rank of a group does with a session's slots, step after step —
// apply a turn (drop jobs, admit jobs), run one training step, evaluate the slots due (keeping
// each one's best parameters), then hand each slot that finished, stopped early or failed back
// to the driver. Two drivers stand behind one interface: the worker group's
// (jobs leased from the coordinator, worker/group_runner.cpp) and the local run's (a spec's jobs,
// worker/local/local_run.cpp). The loop owns the order of the trainer's collectives; a driver
// owns where jobs come from and where their results go.
//
// Every rank runs the loop with the same turns (a driver's next_turn must return the same turn on
// every rank — the group runner broadcasts rank 0's), so the ranks call the trainer's collectives
// in the same order. Thread-safety: the training loop only.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "worker/engine/metrics.h"
#include "worker/engine/trainer.h"

namespace bitfleet::engine {

struct Admission {
  int slot = 0;
  TrainJob job;
  std::string checkpoint;  // empty: a fresh start
};

// How a job ended: its result is the best evaluation's parameters (the slot holds them when
// finished() is called), or the last step's without a validation set.
struct JobOutcome {
  Metrics final_metrics;                 // the last evaluation's (empty without a validation set)
  std::optional<BestEvaluation> best;    // the chosen evaluation
  Metrics test_metrics;                  // the test set's, with the chosen parameters (empty: none)
  bool stopped_early = false;            // early_stopping_patience ended it before its last step
  // The metrics of the result: the best evaluation's, else the final ones.
  const Metrics& metrics() const { return best ? best->metrics : final_metrics; }
};

// What changes at one step boundary, in this order: drops, admissions, then stop (or a step).
struct Turn {
  std::vector<int> drop;          // slots whose jobs leave without a result (cancelled, leased elsewhere)
  std::vector<Admission> admit;   // into free slots
  bool stop = false;              // leave the loop after the admissions, before the next step
};

class SlotDriver {
 public:
  virtual ~SlotDriver() = default;
  // The next turn; same on every rank. An error ends the loop.
  virtual Result<Turn> next_turn(const Trainer& trainer) = 0;
  // The outcome of an admission of the last turn (not ok: the slot stayed free).
  virtual void admitted(const Admission& admission, const Status& outcome) = 0;
  // After every step and its evaluations, before the finished slots leave (events, checkpoints);
  // report.finished includes the slots that stopped early.
  virtual Status stepped(const StepReport& report) = 0;
  // An evaluation during training (every rank; the slot is still training or about to finish).
  virtual Status evaluated(int slot, const Evaluation& evaluation) = 0;
  // A slot reached its last step or stopped early; it holds its result's parameters (so its
  // artifact can be taken) and is released after.
  virtual Status finished(int slot, const JobOutcome& outcome) = 0;
  // A slot failed alone (non-finite loss or gradient), right after its step; released after.
  virtual void failed(int slot, const std::string& reason) = 0;
};

// The JSON the drivers report: metrics as an object; an evaluation event's data {step, epoch,
// metrics, seconds, best: {step, epoch, metrics}}; and the artifact's metadata about its choice
// (metrics — the result's —, final_metrics, best_step, test_metrics, stopped_early).
nlohmann::json metrics_json(const Metrics& metrics);
nlohmann::json evaluation_json(const Evaluation& evaluation, const std::optional<BestEvaluation>& best);
std::map<std::string, std::string> outcome_metadata(const JobOutcome& outcome);

// Runs turns and steps until a turn says stop or a driver's call fails. A trainer error (a
// collective that failed) is returned: the group cannot go on.
Status run_slot_loop(Trainer& trainer, SlotDriver& driver);

}  // namespace bitfleet::engine
