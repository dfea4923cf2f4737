// Manifest: hundreds of tasks in one table (CSV, TSV or JSONL), one row per task, read into job
// requests whose files are still local paths.
//
//   name,train_file,validation_file,task_type,text_fields,label_field,labels,learning_rate
//   rte,rte/train.tsv,rte/dev.tsv,classification,sentence1|sentence2,label,entailment|not_entailment,2e-3
//
// Columns: name (kept as metadata.name), backbone, train_file, validation_file (paths relative to
// the manifest), task_type, text_fields, label_field, labels (lists separated by '|'), every
// hyperparameter by its name (epochs, batch_size, learning_rate, warmup_ratio, weight_decay,
// max_seq_len, seed, bias_terms, max_grad_norm, max_steps), priority, and metadata.KEY. An empty
// cell leaves the field to the defaults (--defaults JOB.json, then the coordinator's). A
// hyperparameter cell with '|'-separated values (not bias_terms, whose '|' separates kinds) makes
// the row a sweep over those values (POST /v1/sweeps, grid strategy).
// Every row is validated here, before anything is uploaded: the request as the coordinator would
// (common::parse_job_request) and its column references against the data files' headers. Each
// error names the manifest's line, the row and the column; all bad rows are reported at once.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace bitfleet::cli {

struct ManifestTask {
  int64_t row = 0;   // 1-based data row
  int64_t line = 0;  // the manifest line it starts on
  std::string name;  // "" when the row has none
  nlohmann::json request;  // train_file / validation_file / test_file: absolute local paths
  // A hyperparameter cell holding values separated by '|' (learning_rate = 1e-4|1e-3) makes the
  // row a sweep: {name: [values]} over `request` as its base; empty for a plain job.
  nlohmann::json grid = nlohmann::json::object();
};

// base: the fields every row starts from (--defaults), may be empty.
Result<std::vector<ManifestTask>> read_manifest(const std::string& path, const nlohmann::json& base);

// The manifest column that sets a job request field ("hyperparameters.epochs" -> "epochs",
// "task.text_fields[1]" -> "text_fields"); "" for a field no column sets.
std::string manifest_column(const std::string& field);

}  // namespace bitfleet::cli
