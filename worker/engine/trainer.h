// Trainer: multi-task BitFit training over the ranks of one worker group.
//
// Jobs enter free slots and leave between steps. Each step (ARCHITECTURE.md "Worker group"):
//   1. every active slot takes its job's next global batch (from the job's own data order) and
//      this rank its contiguous share of it; per-example losses are scaled by 1 / the job's global
//      batch (1 / its labelled tokens for token tasks) so a SUM all-reduce gives the global mean;
//   2. forward and backward over the packed batch of all slots, in passes of whole segments (on CPU
//      one segment per pass: options.max_rows_per_pass);
//   3. each slot's loss goes into its gradient row's reserved float, and ONE all-reduce sums the
//      rows [0, highest active slot] of the flat gradient buffer;
//   4. per slot: gradients masked to what the job trains, global-norm clipping, AdamW (own step,
//      bias correction, decoupled weight decay, linear warm-up and decay) — all slots at once.
// A slot whose loss or gradient is not finite fails alone; the others update. All ranks see the
// same reduced values, so they make the same decisions without further communication.
//
// Every rank must call admit/release/step/evaluate in the same order with the same arguments
// (rank 0's agent broadcasts the plan that ensures it). Thread-safety: the training loop only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "common/job_spec.h"
#include "common/status.h"
#include "worker/comm/communicator.h"
#include "worker/engine/batch_builder.h"
#include "worker/engine/bitfit_model.h"
#include "worker/engine/metrics.h"
#include "worker/text/dataset.h"

namespace bitfleet::engine {

struct TrainJob {
  std::string id;
  common::JobRequest request;
  std::shared_ptr<const text::Dataset> train;
  std::shared_ptr<const text::Dataset> validation;  // may be null: no evaluation
  std::shared_ptr<const text::Dataset> test;        // may be null; evaluated once, at the end
};

enum class Split { kValidation, kTest };

// One evaluation during training (validation set) and what it decided.
struct Evaluation {
  int64_t step = 0;
  int64_t epoch = 0;  // completed epochs at `step`
  Metrics metrics;
  double seconds = 0.0;
  bool improved = false;  // the best so far by metric_for_best: its parameters are kept
  bool stop = false;      // early_stopping_patience evaluations without improvement: the job ends
};

// The evaluation whose parameters are a job's result.
struct BestEvaluation {
  int64_t step = 0;
  int64_t epoch = 0;
  Metrics metrics;
};

// Where a job is in its training, as a checkpoint restores it.
struct JobProgress {
  int64_t step = 0;         // optimizer steps done (AdamW's t)
  int64_t total_steps = 0;
  int64_t epoch = 0;
  int64_t batch_index = 0;  // next batch within the epoch
};

struct SlotReport {
  int slot = 0;
  std::string job_id;
  JobProgress progress;
  double loss = 0.0;           // this step's global mean training loss
  double learning_rate = 0.0;  // used by this step
};

struct StepReport {
  std::vector<SlotReport> slots;                         // slots that stepped
  std::vector<int> finished;                             // reached their last step
  std::vector<int> evaluate;                             // due for evaluation (see evaluate_for_best)
  std::vector<std::pair<int, std::string>> failed;       // slot, reason
  int64_t examples = 0;                                  // global, this step
  int64_t tokens = 0;                                    // global non-padding tokens, this step
  double seconds = 0.0;
  double allreduce_seconds = 0.0;
  int64_t allreduce_bytes = 0;
};

struct TrainerOptions {
  int64_t eval_batch_size = 64;
  bool group_by_length = true;
  // Forward and backward run over passes of whole segments of at most this many token rows (a
  // segment is never split), the gradients accumulating in the flat buffer. 0: one pass over the
  // packed batch (the GPU default). kOneSegmentPerPass (the CPU default): every op a slot's numbers
  // go through — each GEMM, LayerNorm, reduction — sees only that slot's rows, so its results do not
  // depend on its batch neighbours by construction, on any BLAS, CPU and thread count (a GEMM's
  // row results may depend on its row count M: MKL's do on Intel Xeons with 2+ threads).
  // Larger values pack several segments per pass: ~5% faster on CPU, neighbour-independent
  // only where the BLAS is (docs/user-guide.md "Reproducibility, exactly").
  static constexpr int64_t kOneSegmentPerPass = 1;
  static constexpr int64_t default_rows_per_pass(bool cuda) { return cuda ? 0 : kOneSegmentPerPass; }
  int64_t max_rows_per_pass = 0;
};

class Trainer {
 public:
  Trainer(BitFitModel& model, comm::Communicator& comm, int32_t pad_id, TrainerOptions options = {});

  // Checks that a job can run here (task, labels, sequence length, bias kinds) without admitting it.
  Status check(const common::JobRequest& request) const;
  // Puts a job in a free slot, fresh or from a checkpoint (bytes of checkpoint()).
  Status admit(int slot, TrainJob job, const std::string* checkpoint = nullptr);
  void release(int slot);

  bool active(int slot) const { return slots_[slot].active; }
  std::vector<int> free_slots() const;  // ascending
  int active_count() const;
  const TrainJob& job(int slot) const { return slots_[slot].job; }
  const JobProgress& progress(int slot) const { return slots_[slot].progress; }

  // One training step of every active slot. A collective: every rank calls it.
  Result<StepReport> step();
  // A slot's metrics on its validation or test set with its current parameters (a collective).
  // Empty without that set.
  Result<Metrics> evaluate(int slot, Split split = Split::kValidation);
  // Evaluates a slot that a step reported due (StepReport::evaluate: with a validation set, every
  // eval_every_steps steps or at each epoch's end, and at the last step) and keeps a copy of its
  // parameters when the metric_for_best is the best so far (a collective).
  Result<Evaluation> evaluate_for_best(int slot);
  const std::optional<BestEvaluation>& best(int slot) const { return slots_[slot].best; }
  // The slot's parameters become those of its best evaluation (none yet: unchanged).
  void use_best(int slot);

  // The slot's resumable state (biases, head, AdamW moments, position), safetensors bytes.
  std::string checkpoint(int slot) const;
  // The slot's result: Hugging Face parameter names, and metadata (job, backbone, task, metrics).
  std::string artifact(int slot, const std::map<std::string, std::string>& metadata) const;

  int64_t allreduce_bytes_per_step() const;

 private:
  struct Slot {
    bool active = false;
    TrainJob job;
    JobProgress progress;
    int64_t steps_per_epoch = 0;
    std::vector<int32_t> order;  // this epoch's data order
    std::optional<BestEvaluation> best;  // its parameters: best_params_'s row
    double best_score = 0.0;             // metric_for_best, negated where lower is better
    int64_t since_best = 0;              // evaluations since the best
  };

  void start_epoch(Slot& s);
  Status restore(int slot, const std::string& checkpoint);
  Status restore_best(Slot& s, const std::string& text);
  void predict_chunk(int slot, const text::Dataset& data, const std::vector<int32_t>& order, int64_t chunk,
                     int64_t stop, const std::vector<int64_t>& offset, at::Tensor& predictions);
  // The step's parts (trainer.cpp).
  std::vector<SegmentInput> rank_share(const std::vector<int>& active, StepReport& report) const;
  void forward_backward(std::vector<SegmentInput> inputs);
  void update(const std::vector<int>& active, StepReport& report);
  void advance(StepReport& report);
  void build_mask(int slot);
  std::vector<std::pair<std::string, at::Tensor>> trained_tensors(int slot, const at::Tensor& source) const;
  double learning_rate(const Slot& s) const;

  BitFitModel& model_;
  comm::Communicator& comm_;
  TrainerOptions options_;
  BatchBuilder builder_;
  std::vector<Slot> slots_;
  at::Tensor adam_m_, adam_v_, mask_;  // [S, row] fp32, like the parameters
  at::Tensor best_params_;             // [S, row]: each slot's parameters at its best evaluation
};

}  // namespace bitfleet::engine
