// Batch: one training or evaluation step's inputs, laid out for BitFitModel.
//
// Token rows are packed: a batch is a sequence of segments, one per slot, and a segment's
// examples are padded only to that segment's longest example. Row r of every per-row tensor is
// one token position of one example. Per-token work (embeddings, LayerNorm, every linear layer,
// the bias-table gathers) runs over all rows at once; attention, the pooler and the heads run per
// segment. Whether a slot's bits depend on the other slots in a batch is then up to the BLAS: a
// GEMM's row i is bit-identical whatever the row count M for M a multiple of 16 with one thread
// (and on AMD EPYC with two), but not on Intel Xeons with 2+ threads, where MKL splits by M
// (tests/unit/engine/torch_toolchain_test.cpp). So the CPU trainer runs one segment per pass
// (TrainerOptions), which makes it independent of neighbours by construction; the GPU packs many.
// The builder pads the row count to a multiple of 16 with rows that belong to no segment.
//
// Only some rows reach a head: each example's first row for a sequence task, every row for a
// token task. These are the batch's head rows; the model's last layer computes its queries, and
// everything after its attention, for them alone (bitfit_model.h).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/Tensor.h>

#include "common/job_spec.h"

namespace bitfleet::engine {

struct BatchSegment {
  int slot = 0;
  common::TaskType task = common::TaskType::kClassification;
  int64_t num_outputs = 2;
  int64_t row_begin = 0;  // rows [row_begin, row_begin + examples * seq_len)
  int64_t examples = 0;
  int64_t seq_len = 0;
  at::Tensor attention_mask;  // [examples, seq_len] bool on the device: true for real tokens
  bool padded = false;        // whether any example is shorter than seq_len (known on the host)
  // classification: [examples] int64; regression: [examples] float;
  // token classification: [examples, seq_len] int64 with -100 where no label applies.
  // Undefined for inference.
  at::Tensor labels;
  // The segment's loss is the sum over its examples (tokens) times this: 1 / the job's global
  // batch (or labelled tokens), so that a SUM all-reduce over ranks gives the global mean.
  double loss_scale = 1.0;
};

// How many of an example's rows reach its head.
inline int64_t head_rows_per_example(const BatchSegment& s) {
  return s.task == common::TaskType::kTokenClassification ? s.seq_len : 1;
}

struct Batch {
  at::Tensor input_ids;       // [rows] int64
  at::Tensor token_type_ids;  // [rows] int64
  at::Tensor position_ids;    // [rows] int64
  at::Tensor row_slots;       // [rows] int64: the slot of each row, indexing the bias tables
  // [head rows] int64: the rows that reach a head, segment by segment, then row 0 repeated up to
  // a multiple of kRowMultiple (as the rows are padded: a GEMM's row bits then do not depend on
  // the other segments, batch.h's top).
  at::Tensor head_rows;
  // [examples of sequence tasks] int64: each example's first row, as a position in head_rows.
  at::Tensor first_rows;
  std::vector<BatchSegment> segments;
  int64_t rows = 0;               // all rows, padding included: a multiple of kRowMultiple
  int64_t segment_rows = 0;       // rows that belong to a segment; the rest are padding
  int64_t head_segment_rows = 0;  // head rows that belong to a segment; the rest are padding

  static constexpr int64_t kRowMultiple = 16;
};

}  // namespace bitfleet::engine
