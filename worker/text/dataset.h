// Dataset: a task's examples, read from a table (TSV/CSV/JSONL) and tokenized.
//
// Text fields and the label field are column names or 0-based indexes. Classification labels
// must be one of the task's label names (JSON integers are read as their decimal text);
// regression targets are finite numbers; token classification reads a list of words and a list
// of tags of the same length (JSON arrays, or whitespace-separated text in TSV/CSV), and labels
// the first token of each word, as Hugging Face does. Any bad record is an error naming the file,
// line and field; none is dropped.
// Thread-safety: immutable once loaded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/job_spec.h"
#include "common/status.h"
#include "common/table_reader.h"
#include "worker/text/tokenizer.h"

namespace bitfleet::text {

struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> type_ids;
  int64_t label = 0;                  // classification
  float target = 0.0f;                // regression
  std::vector<int32_t> token_labels;  // token classification: per token, -100 where none
  int64_t line = 0;                   // where it came from
};

struct Dataset {
  std::string name;
  common::TaskType task = common::TaskType::kClassification;
  std::vector<Example> examples;

  std::vector<int32_t> lengths() const;
};

Result<Dataset> make_dataset(const common::Table& table, const common::TaskSpec& task, const Tokenizer& tokenizer,
                             int max_seq_len);

// Reads and tokenizes a file; its format comes from `format_name` (a file name such as the one
// given at upload), so that cached files can be stored under any name.
Result<Dataset> load_dataset(const std::string& path, const std::string& format_name, const common::TaskSpec& task,
                             const Tokenizer& tokenizer, int max_seq_len);

}  // namespace bitfleet::text
