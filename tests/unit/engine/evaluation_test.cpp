// Evaluation during training through the slot loop: when evaluations happen, which one is best,
// that the result holds the best evaluation's parameters (not the last step's), early stopping at
// the patience, the test set scored with the chosen parameters, and a resume that keeps the best.
//
// The data makes the last evaluation worse than an early one by construction: the validation set
// is the training set with every label flipped, so the better the slot fits its training data the
// lower its validation accuracy.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include <ATen/ATen.h>

#include "tests/unit/engine/engine_fixture.h"
#include "worker/engine/slot_loop.h"

namespace bitfleet::engine {
namespace {

using common::TaskType;

std::shared_ptr<text::Dataset> make_data(int n, bool flipped) {
  std::mt19937 rng(7);
  auto d = std::make_shared<text::Dataset>();
  for (int i = 0; i < n; ++i) {
    text::Example e;
    const int len = 4 + static_cast<int>(rng() % 8);
    for (int t = 0; t < len; ++t) e.ids.push_back(5 + static_cast<int32_t>(rng() % 290));
    e.type_ids.assign(len, 0);
    e.label = e.ids[1] % 2;  // learnable from one token
    if (flipped) e.label = 1 - e.label;
    d->examples.push_back(std::move(e));
  }
  return d;
}

common::JobRequest request(int64_t eval_every, int patience) {
  common::JobRequest r;
  r.task = {.type = TaskType::kClassification, .text_fields = {"text"}, .label_field = "label", .labels = {"a", "b"}};
  auto& h = r.hyperparameters;
  h.epochs = 8;
  h.batch_size = 8;
  h.learning_rate = 5e-2;
  h.warmup_ratio = 0;
  h.max_seq_len = 32;
  h.eval_every_steps = eval_every;
  h.metric_for_best = "accuracy";
  h.early_stopping_patience = patience;
  return r;
}

// Admits the given jobs at the first turn (or, for a resume, at a later one), stops when no slot
// is active; records what the loop reports, and each evaluation's parameters.
class RecordingDriver final : public SlotDriver {
 public:
  RecordingDriver(BitFitModel& model, std::vector<Admission> admit, int64_t stop_after_steps = 0)
      : model_(model), admit_(std::move(admit)), stop_after_steps_(stop_after_steps) {}

  Result<Turn> next_turn(const Trainer& trainer) override {
    Turn turn;
    turn.admit = std::move(admit_);
    admit_.clear();
    turn.stop = (turn.admit.empty() && trainer.active_count() == 0) || (stop_after_steps_ > 0 && steps_ >= stop_after_steps_);
    return turn;
  }
  void admitted(const Admission& a, const Status& outcome) override {
    EXPECT_TRUE(outcome.is_ok()) << a.job.id << ": " << outcome.to_string();
  }
  Status stepped(const StepReport&) override {
    ++steps_;
    return Status::ok();
  }
  Status evaluated(int slot, const Evaluation& e) override {
    evaluations[slot].push_back(e);
    params_at[slot][e.step] = model_.params()[slot].clone();
    return Status::ok();
  }
  Status finished(int slot, const JobOutcome& outcome) override {
    outcomes[slot] = outcome;
    result_params[slot] = model_.params()[slot].clone();
    return Status::ok();
  }
  void failed(int slot, const std::string& reason) override { ADD_FAILURE() << "slot " << slot << " failed: " << reason; }

  std::map<int, std::vector<Evaluation>> evaluations;
  std::map<int, std::map<int64_t, at::Tensor>> params_at;
  std::map<int, JobOutcome> outcomes;
  std::map<int, at::Tensor> result_params;

 private:
  BitFitModel& model_;
  std::vector<Admission> admit_;
  int64_t stop_after_steps_;
  int64_t steps_ = 0;
};

double accuracy(const Metrics& m) {
  for (const auto& [name, value] : m) {
    if (name == "accuracy") return value;
  }
  ADD_FAILURE() << "no accuracy";
  return 0;
}

class EvaluationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backbone_ = testing::random_backbone(dir_);
    ASSERT_NE(backbone_, nullptr);
    model_ = std::make_unique<BitFitModel>(*backbone_, ModelOptions{.slots = 3, .max_labels = 4});
    comm_ = comm::make_local_communicator();
    trainer_ = std::make_unique<Trainer>(*model_, *comm_, static_cast<int32_t>(backbone_->config().pad_token_id),
                                         TrainerOptions{.max_rows_per_pass = TrainerOptions::kOneSegmentPerPass});
  }

  TrainJob job(const std::string& id, common::JobRequest r, bool with_test = false) {
    return {id, std::move(r), train_, validation_, with_test ? validation_ : nullptr};
  }

  testing::TempDir dir_;
  std::unique_ptr<Backbone> backbone_;
  std::unique_ptr<BitFitModel> model_;
  std::unique_ptr<comm::Communicator> comm_;
  std::unique_ptr<Trainer> trainer_;
  std::shared_ptr<text::Dataset> train_ = make_data(32, false), validation_ = make_data(32, true);
};

TEST_F(EvaluationTest, TheResultHoldsTheBestEvaluationsParametersNotTheLastStepsOnes) {
  RecordingDriver driver(*model_, {{0, job("evaluated", request(3, 0), /*with_test=*/true), {}},
                                   {1, {"no-validation", request(3, 0), train_, nullptr, nullptr}, {}}});
  ASSERT_TRUE(run_slot_loop(*trainer_, driver).is_ok());

  // Every 3 steps and at the last (8 epochs of 4 batches: 32 steps).
  const auto& evals = driver.evaluations[0];
  std::vector<int64_t> steps;
  for (const auto& e : evals) steps.push_back(e.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 32}));
  EXPECT_EQ(driver.evaluations.count(1), 0u) << "a job without a validation set is never evaluated";

  // The best: the highest accuracy, the earliest on ties; the last evaluation is worse.
  size_t best = 0;
  for (size_t i = 1; i < evals.size(); ++i) {
    if (accuracy(evals[i].metrics) > accuracy(evals[best].metrics)) best = i;
  }
  const JobOutcome& outcome = driver.outcomes.at(0);
  ASSERT_TRUE(outcome.best.has_value());
  EXPECT_EQ(outcome.best->step, evals[best].step);
  EXPECT_EQ(outcome.best->metrics, evals[best].metrics);
  EXPECT_EQ(outcome.final_metrics, evals.back().metrics);
  ASSERT_LT(accuracy(evals.back().metrics), accuracy(evals[best].metrics)) << "the data should make the last worse";
  EXPECT_FALSE(outcome.stopped_early);

  // The result's parameters are those at the best evaluation, bit for bit, not the last step's.
  EXPECT_TRUE(at::equal(driver.result_params.at(0), driver.params_at[0].at(outcome.best->step)));
  EXPECT_FALSE(at::equal(driver.result_params.at(0), driver.params_at[0].at(32)));
  // The test set (here the validation set again) is scored with the chosen parameters.
  EXPECT_EQ(outcome.test_metrics, outcome.best->metrics);

  // Without a validation set the result is the last step, with no evaluation and no best.
  EXPECT_FALSE(driver.outcomes.at(1).best.has_value());
  EXPECT_TRUE(driver.outcomes.at(1).final_metrics.empty());
  EXPECT_TRUE(driver.outcomes.at(1).test_metrics.empty());
}

TEST_F(EvaluationTest, EarlyStoppingEndsTheJobAtThePatienceAndKeepsTheBest) {
  RecordingDriver driver(*model_, {{0, job("patient", request(2, 3)), {}}});
  ASSERT_TRUE(run_slot_loop(*trainer_, driver).is_ok());
  const auto& evals = driver.evaluations[0];
  const JobOutcome& outcome = driver.outcomes.at(0);
  ASSERT_TRUE(outcome.best.has_value());
  EXPECT_TRUE(outcome.stopped_early);
  EXPECT_TRUE(evals.back().stop);
  // Exactly `patience` evaluations after the best, none of them an improvement, then the end.
  ASSERT_GE(evals.size(), 4u);
  EXPECT_EQ(evals[evals.size() - 4].step, outcome.best->step);
  for (size_t i = evals.size() - 3; i < evals.size(); ++i) EXPECT_FALSE(evals[i].improved);
  EXPECT_LT(evals.back().step, 32) << "stopped before its last step";
  EXPECT_TRUE(at::equal(driver.result_params.at(0), driver.params_at[0].at(outcome.best->step)));
}

TEST_F(EvaluationTest, AResumeFromACheckpointKeepsTheBestSoFar) {
  RecordingDriver whole(*model_, {{0, job("resumed", request(3, 0)), {}}});
  ASSERT_TRUE(run_slot_loop(*trainer_, whole).is_ok());
  const JobOutcome& want = whole.outcomes.at(0);
  ASSERT_TRUE(want.best.has_value());
  ASSERT_LT(want.best->step, 29) << "the interruption below should come after the best";

  // The same job, stopped after step 29 (after the best and an evaluation at 27), checkpointed,
  // and resumed in another slot: the same best, the same result.
  RecordingDriver first(*model_, {{0, job("resumed", request(3, 0)), {}}}, /*stop_after_steps=*/29);
  ASSERT_TRUE(run_slot_loop(*trainer_, first).is_ok());
  ASSERT_TRUE(trainer_->active(0));
  const std::string checkpoint = trainer_->checkpoint(0);
  trainer_->release(0);
  RecordingDriver second(*model_, {{2, job("resumed", request(3, 0)), checkpoint}});
  ASSERT_TRUE(run_slot_loop(*trainer_, second).is_ok());
  const JobOutcome& got = second.outcomes.at(2);
  ASSERT_TRUE(got.best.has_value());
  EXPECT_EQ(got.best->step, want.best->step);
  EXPECT_EQ(got.best->metrics, want.best->metrics);
  EXPECT_EQ(got.final_metrics, want.final_metrics);
  EXPECT_TRUE(at::equal(second.result_params.at(2), whole.result_params.at(0)));
}

}  // namespace
}  // namespace bitfleet::engine
