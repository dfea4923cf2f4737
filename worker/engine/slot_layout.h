// SlotLayout: where each trainable tensor of one slot lives in its row of the flat buffer.
//
// All trainable state is one fp32 buffer params[S][row_size], slot-major (ARCHITECTURE.md "The
// core idea"). A row holds, for one slot, every bias vector of the table kinds (layer by layer,
// then embeddings LayerNorm and pooler) followed by the task head: the classifier
// [max_labels, hidden] + [max_labels], preceded for RoBERTa by its classification head's dense
// layer [hidden, hidden] + [hidden]. The row's last float is reserved: in the gradient buffer it
// carries the slot's loss, so the step's one all-reduce sums gradients and losses together. Rows
// are padded to 16 floats so that every row starts 64-byte aligned: per-row reductions then take
// the same path for every slot, which keeps a job's numbers independent of its slot.
//
// The layout also names each segment with its Hugging Face parameter name, which is how
// artifacts are written and read. Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/job_spec.h"
#include "worker/engine/backbone_config.h"

namespace bitfleet::engine {

enum class HeadPart { kDenseWeight, kDenseBias, kClassifierWeight, kClassifierBias };

struct RowSegment {
  int64_t offset = 0;
  std::vector<int64_t> shape;
  std::optional<common::BiasKind> bias_kind;  // a bias vector, or
  std::optional<HeadPart> head_part;          // a piece of the head
  int layer = -1;

  int64_t numel() const;
};

class SlotLayout {
 public:
  static constexpr int64_t kRowAlignment = 16;

  // `table_kinds`: the bias kinds that get a per-slot row (the rest stay shared vectors).
  SlotLayout(const BackboneConfig& config, common::BiasKindSet table_kinds, int64_t max_labels);

  int64_t row_size() const { return row_size_; }
  // The reserved float: the loss in gradient rows, unused (always zero) in parameter rows.
  int64_t loss_offset() const { return row_size_ - 1; }
  int64_t max_labels() const { return max_labels_; }
  common::BiasKindSet table_kinds() const { return table_kinds_; }
  const std::vector<RowSegment>& segments() const { return segments_; }

  // The segment of a bias kind (layer ignored for once-per-model kinds); null if not a table.
  const RowSegment* bias(common::BiasKind kind, int layer) const;
  const RowSegment* head(HeadPart part) const;

  // Whether the task's model uses a bias kind / head part at all (BERT's pooler only feeds its
  // sequence heads; RoBERTa's classification head replaces the pooler; token heads use neither).
  bool task_uses(common::TaskType task, common::BiasKind kind) const;
  bool task_uses(common::TaskType task, HeadPart part) const;

  // The Hugging Face parameter name of a segment in the task's model, e.g.
  // "bert.encoder.layer.0.attention.self.query.bias" or "classifier.out_proj.weight".
  std::string hf_name(const RowSegment& segment, common::TaskType task) const;
  // The shape the segment has in a task with `num_outputs` outputs (heads are cut to it).
  std::vector<int64_t> task_shape(const RowSegment& segment, int64_t num_outputs) const;

 private:
  BackboneConfig config_;
  common::BiasKindSet table_kinds_;
  int64_t max_labels_;
  std::vector<RowSegment> segments_;
  int64_t row_size_ = 0;
};

}  // namespace bitfleet::engine
