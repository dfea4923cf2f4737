// BitFitModel: one frozen backbone computing a batch that mixes examples of many tasks, each
// example using its own slot's bias rows and head.
//
// Every bias kind in `table_kinds` becomes a bias table B[S, width], and each slot's head lives
// beside its biases: all of it is the flat fp32 buffer params() = [S, row_size] (see
// slot_layout.h). The tables and heads are autograd leaves that are views into params(), and
// their .grad are the matching views into grads(), so backward accumulates straight into the flat
// gradient buffer — the one buffer the trainer all-reduces. Frozen weights never require grad, so
// backward computes input gradients only.
//
//   linear:     y = x · Wᵀ + B[slot of row]
//   layernorm:  y = γ ⊙ (x − μ)/σ + Β[slot of row]
//   head:       logits = h · H[slot]ᵀ + c[slot]
//
// How B[slot of row] is added depends on the device. On the CPU the rows are gathered from the
// table (an embedding lookup) and become the GEMM's accumulator. In bf16, where a pass holds one
// segment (training's default, trainer.h), its slot's row is broadcast instead: the same forward
// bits with no rows × width gather, bf16 cast or scatter (8% of a bf16 step, measured), and a bias
// gradient summed over rows in bf16 and rounded once, as under autocast. All of the slot's bias
// vectors then come from one cast of its bias region, one autograd node each way (SlotBiases).
//
// On a GPU that gather would move more bytes than the GEMM does arithmetic (rows × width fp32,
// written, converted, read, and scattered back in backward), so the bias is added in place by a
// rank-S GEMM instead:
// y += OneHot[rows, S] · B[S, width] in bf16, whose backward is OneHotᵀ · dy — two tensor-core
// GEMMs with K or M = S, and no rows × width temporary.
//
// Thread-safety: the training loop's thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "common/job_spec.h"
#include "common/status.h"
#include "worker/engine/backbone.h"
#include "worker/engine/batch.h"
#include "worker/engine/cpu_attention.h"
#include "worker/engine/slot_layout.h"

namespace bitfleet::engine {

struct ModelOptions {
  int64_t slots = 8;
  int64_t max_labels = 64;
  common::BiasKindSet table_kinds = common::all_bias_kinds();
  CpuAttentionKernel cpu_attention = CpuAttentionKernel::kAuto;  // bf16 on the CPU (cpu_attention.h)
  // The last layer past its keys and values for the head rows only (batch.h); false computes it
  // for every row, as a check of that cut (tests) and its baseline (bench).
  bool head_rows_only = true;
};

struct ForwardOutput {
  std::vector<at::Tensor> logits;  // per segment: [n, L], [n] (regression) or [n, T, L] (tokens)
  std::vector<at::Tensor> losses;  // per segment: scalar, scaled by loss_scale; empty without labels
};

class BitFitModel {
 public:
  BitFitModel(const Backbone& backbone, ModelOptions options);

  const SlotLayout& layout() const { return layout_; }
  const Backbone& backbone() const { return backbone_; }
  int64_t slots() const { return options_.slots; }

  at::Tensor params() const { return params_; }  // [S, row_size] fp32
  // [S, row_size] fp32: the flat gradient buffer the trainer all-reduces (each row's last float
  // is the trainer's place for the slot's loss; see SlotLayout::loss_offset()).
  at::Tensor grads() const { return grads_; }

  // Starts a slot over: every bias row set to the pretrained bias, and a new head drawn from a
  // CPU generator seeded with `seed` (normal(0, 0.02) weights, zero biases, as Hugging Face
  // initialises one; RoBERTa's dense layer first, then the output layer).
  void reset_slot(int slot, common::TaskType task, int64_t num_outputs, uint64_t seed);

  // A slot's row of `buffer` ([S, row_size]: params(), grads(), or optimizer state laid out like
  // them) as tensors named as the task's Hugging Face model names them: the biases of `kinds`
  // that the task uses, and its head cut to num_outputs. fp32 on the CPU.
  std::vector<std::pair<std::string, at::Tensor>> export_slot(const at::Tensor& buffer, int slot,
                                                              common::TaskType task, int64_t num_outputs,
                                                              common::BiasKindSet kinds) const;
  // The inverse: copies tensors named as export_slot() names them into a slot's row of `buffer`.
  // Unknown names are ignored; shapes must match. Returns how many were copied.
  Result<int> import_slot(at::Tensor buffer, int slot, common::TaskType task, int64_t num_outputs,
                          const std::vector<std::pair<std::string, at::Tensor>>& tensors) const;

  // Whether this backbone can run a task (a BERT checkpoint saved without its pooler cannot run
  // sequence tasks). Callers check before a job enters a slot.
  Status supports(common::TaskType task) const;

  ForwardOutput forward(const Batch& batch);
  // Backpropagates the sum of the losses; gradients accumulate into grads().
  void backward(const ForwardOutput& output);

 private:
  // Which slot each row belongs to: the indices (CPU path) or the one-hot rows (GPU path).
  struct RowSlots {
    at::Tensor index;   // [rows] int64
    at::Tensor onehot;  // [rows, S] in the compute dtype; defined on the GPU path only
    int single = -1;    // CPU bf16: the one slot every segment row of the pass belongs to; else -1
    std::vector<at::Tensor> single_biases;  // with `single`: its bias vectors (SlotBiases in the .cpp)
    RowSlots select(const at::Tensor& which) const;  // the rows `which`
    RowSlots narrow(int64_t begin, int64_t n) const;
  };
  RowSlots row_slots(const Batch& batch) const;
  const at::Tensor& table(common::BiasKind kind, int layer) const;
  at::Tensor gathered(common::BiasKind kind, int layer, const RowSlots& slots) const;
  // x += B[slot of row], in place; x is a fresh intermediate autograd does not save.
  at::Tensor add_table_rows(at::Tensor x, common::BiasKind kind, int layer, const RowSlots& slots) const;
  at::Tensor linear(const at::Tensor& x, const at::Tensor& w, common::BiasKind kind, int layer,
                    const at::Tensor& shared_bias, const RowSlots& slots) const;
  // count consecutive ones of a layer's q, k and v (first: 0 = q, 1 = k, 2 = v) for the rows of x.
  std::vector<at::Tensor> project(const at::Tensor& x, int layer, const RowSlots& slots, int first,
                                  int count) const;
  // LayerNorm(a + x) with the slot's β; a may be undefined (LayerNorm(x)).
  at::Tensor add_layer_norm(const at::Tensor& a, const at::Tensor& x, const at::Tensor& gamma, common::BiasKind kind,
                            int layer, const at::Tensor& shared_beta, const RowSlots& slots) const;
  // q for every row, or with head_rows for the batch's head rows; k and v for every row.
  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Batch& batch,
                       bool head_rows) const;
  at::Tensor head_logits(const BatchSegment& segment, const at::Tensor& hidden,
                         const at::Tensor& pooled_rows) const;
  const at::Tensor& head_leaf(int slot, HeadPart part) const;
  // forward's two halves: the encoder (its last layer for the head rows where head_rows), then the
  // heads and losses per segment.
  at::Tensor encode(const Batch& batch, const RowSlots& slots, const RowSlots& head_slots, bool head_rows) const;
  ForwardOutput heads(const Batch& batch, const at::Tensor& x, const RowSlots& slots, bool head_rows) const;
  static at::Tensor segment_loss(const BatchSegment& segment, const at::Tensor& logits);

  const Backbone& backbone_;
  ModelOptions options_;
  SlotLayout layout_;
  at::ScalarType compute_dtype_;
  bool onehot_bias_;  // the GPU path (see the top of this file)
  bool cpu_bf16_;     // bf16 on the CPU: its own kernels, one-segment passes broadcast (constructor)
  at::Tensor params_, grads_;
  // tables_[kind][layer] (layer 0 for once-per-model kinds): a leaf [S, width] or undefined.
  std::vector<std::vector<at::Tensor>> tables_;
  // bf16 on the CPU: slot_biases_[slot], a leaf over the slot's bias region [0, end of the last
  // bias segment) of params(); table_outputs_[kind][layer], that table's place in bias_offsets_
  // and bias_widths_ (the segments' offsets and widths in the region) and in RowSlots::single_biases.
  std::vector<at::Tensor> slot_biases_;
  std::vector<std::vector<int>> table_outputs_;
  std::vector<int64_t> bias_offsets_, bias_widths_;
  // heads_[slot][part]: leaves over the slot's head segments (undefined where unused).
  std::vector<std::vector<at::Tensor>> heads_;
};

}  // namespace bitfleet::engine
