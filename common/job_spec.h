// The job request: what a user asks bitfleet to train, as ARCHITECTURE.md specifies it.
//
//   {"backbone": "minilm-l6", "train_file": "file-…", "validation_file": "file-…", "test_file": "file-…",
//    "task": {"type": "classification", "text_fields": [...], "label_field": "label",
//             "labels": [...]},
//    "hyperparameters": {"epochs": 3, "batch_size": 16, ...}, "priority": 0, "metadata": {}}
//
// parse_job_request() validates every field and names the exact one at fault with its allowed
// range; unknown fields are rejected at every level. to_json() writes the canonical form (defaults
// filled in), which is what the coordinator stores and hands to workers, so a worker never
// re-derives defaults. Thread-safety: values.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/precision.h"
#include "common/status.h"

namespace bitfleet::common {

enum class TaskType { kClassification, kRegression, kTokenClassification };
std::string_view task_type_name(TaskType type);
std::optional<TaskType> parse_task_type(std::string_view name);

// The places in a BERT/RoBERTa encoder that hold a bias BitFit can train.
enum class BiasKind : uint8_t {
  kQuery,
  kKey,
  kValue,
  kAttentionOutput,
  kAttentionLayerNorm,
  kIntermediate,  // the paper's "middle of MLP"
  kOutput,
  kOutputLayerNorm,
  kEmbeddingsLayerNorm,
  kPooler,
};
inline constexpr int kNumBiasKinds = 10;
using BiasKindSet = std::bitset<kNumBiasKinds>;

std::string_view bias_kind_name(BiasKind kind);
std::optional<BiasKind> parse_bias_kind(std::string_view name);
BiasKindSet all_bias_kinds();
BiasKindSet query_intermediate_bias_kinds();  // the paper's 0.04% subset
// "all", "query+intermediate", or the kinds joined by ","; parse_bias_terms() reads the former two
// and a JSON list of kind names.
std::string bias_terms_name(BiasKindSet kinds);

inline constexpr int kMaxLabels = 64;
inline constexpr int kMaxSeqLenLimit = 512;

struct TaskSpec {
  TaskType type = TaskType::kClassification;
  std::vector<std::string> text_fields;  // 1 or 2 (a pair); token tasks: 1, the words
  std::string label_field;
  std::vector<std::string> labels;  // label names; empty for regression

  // Outputs of the task head: labels for (token) classification, 1 for regression.
  int num_outputs() const {
    return type == TaskType::kRegression ? 1 : static_cast<int>(labels.size());
  }
};

// The validation metrics a task's evaluations report (worker/engine/metrics.h computes them), its
// default metric for choosing the best evaluation, and whether lower is better.
const std::vector<std::string>& task_metric_names(TaskType type);
std::string default_metric_for_best(TaskType type);
bool metric_minimised(std::string_view metric);  // mse

struct Hyperparameters {
  int epochs = 3;
  int batch_size = 16;
  double learning_rate = 1e-3;
  double warmup_ratio = 0.06;
  double weight_decay = 0.0;
  int max_seq_len = 128;
  uint64_t seed = 42;
  BiasKindSet bias_terms = all_bias_kinds();
  double max_grad_norm = 1.0;  // 0 disables clipping
  int64_t max_steps = 0;       // 0: epochs decide
  // Evaluation during training (with a validation file): every N optimizer steps, 0 = at the end
  // of each epoch; always at the last step. The best evaluation by metric_for_best (default: the
  // task's, default_metric_for_best) is the job's result.
  int64_t eval_every_steps = 0;
  std::string metric_for_best;
  int early_stopping_patience = 0;  // evaluations without improvement before the job stops; 0: off
  // The precision the job must train in ("dtype": "fp32" or "bf16"), or none ("any": the group's).
  // Only groups of that dtype lease it; "fp32" is how a job asks for the bit-exact CPU promises.
  std::optional<Dtype> dtype;
};

struct JobRequest {
  std::string backbone;
  std::string train_file;
  std::string validation_file;  // empty: none
  std::string test_file;        // empty: none; evaluated once, with the chosen (best) parameters
  TaskSpec task;
  Hyperparameters hyperparameters;
  int priority = 0;
  nlohmann::json metadata = nlohmann::json::object();
};

// The request's file fields, in order.
inline constexpr std::array<const char*, 3> kFileFields = {"train_file", "validation_file", "test_file"};

// How train_file/validation_file/test_file are read: coordinator file ids ("file-…") or local paths
// (bitfleet-train specs).
enum class FileRefs { kFileIds, kLocalPaths };

// Validates `body` (at dotted location `path`, "" for a top-level request).
Result<JobRequest> parse_job_request(const nlohmann::json& body, FileRefs refs,
                                     const std::string& path = "");
nlohmann::json to_json(const JobRequest& request);
nlohmann::json to_json(const TaskSpec& task);
nlohmann::json to_json(const Hyperparameters& hyperparameters);

// 1 to 128 characters of letters, digits, '.', '_' or '-': a backbone's name, and (not starting
// with '.') a file name that stays in its directory.
bool is_plain_name(std::string_view s);

// Resource ids the coordinator hands out: a prefix and 24 lower-case hex digits.
bool is_resource_id(std::string_view id, std::string_view prefix);
inline bool is_file_id(std::string_view id) { return is_resource_id(id, "file-"); }
inline bool is_job_id(std::string_view id) { return is_resource_id(id, "job-"); }

}  // namespace bitfleet::common
