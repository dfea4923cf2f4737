// Artifact reading for serving: a tuned task's safetensors bytes (ARCHITECTURE.md "Artifact") into
// what a slot needs — its task (type, labels, max_seq_len, from the metadata) and its full row of
// the flat parameter buffer, checked against the resident backbone.
//
// The row starts as the pristine row (every bias at its pretrained value, a zero head), and each
// artifact tensor is written over its segment by Hugging Face name. An artifact trained on another
// backbone is refused: by its backbone_sha256 metadata when it has one (every coordinator job's
// does), and always by its tensors — every one must be a bias or head of this backbone with this
// backbone's shape, and the head must be there. Plain host memory (no LibTorch): built on a
// request's thread, so a load never stalls the batcher. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/job_spec.h"
#include "common/status.h"
#include "worker/engine/slot_layout.h"

namespace bitfleet::serve {

struct TaskInfo {
  std::string name;      // what requests call it: a job id, or an artifact file's name
  std::string job_id;    // the artifact's job_id metadata ("" when it has none)
  common::TaskSpec task;
  int max_seq_len = 128;  // the job's: inputs are truncated as its training data was
  std::string artifact_sha256;
};

struct LoadedTask {
  std::shared_ptr<const TaskInfo> info;
  std::vector<float> row;  // [row_size]: what the slot's parameter row becomes
};

struct BackboneIdentity {
  const engine::SlotLayout* layout = nullptr;
  const std::vector<float>* pristine_row = nullptr;
  std::string sha256;            // of the backbone's weights ("" when unknown)
  bool sequence_tasks = true;    // false for a BERT checkpoint without a pooler
};

// `name` is the task's name in requests; errors say which artifact and what is wrong, with codes:
// kDataLoss (not a readable artifact), kFailedPrecondition (made for another backbone or beyond
// this server's --max-labels).
Result<LoadedTask> read_artifact(std::string bytes, const std::string& name, const BackboneIdentity& backbone);

}  // namespace bitfleet::serve
