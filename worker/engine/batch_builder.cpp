#include "worker/engine/batch_builder.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace bitfleet::engine {

using common::TaskType;

BatchBuilder::BatchBuilder(const BackboneConfig& config, c10::Device device, int32_t pad_id)
    : config_(config), device_(device), pad_id_(pad_id) {}

Batch BatchBuilder::build(const std::vector<SegmentInput>& segments) {
  const bool roberta = config_.architecture == Architecture::kRoberta;
  const bool gpu = device_.is_cuda();
  auto host = at::TensorOptions().pinned_memory(gpu);
  auto to_device = [&](at::Tensor t) { return gpu ? t.to(device_, /*non_blocking=*/true) : t; };

  ids_.clear();
  types_.clear();
  positions_.clear();
  slots_.clear();
  first_rows_.clear();
  Batch batch;
  for (const auto& in : segments) {
    int64_t seq_len = 1;
    for (const auto& e : in.examples) seq_len = std::max<int64_t>(seq_len, static_cast<int64_t>(e.ids.size()));
    BatchSegment seg;
    seg.slot = in.slot;
    seg.task = in.task;
    seg.num_outputs = in.num_outputs;
    seg.row_begin = static_cast<int64_t>(ids_.size());
    seg.examples = static_cast<int64_t>(in.examples.size());
    seg.seq_len = seq_len;
    seg.loss_scale = in.loss_scale;

    at::Tensor mask = at::zeros({seg.examples, seq_len}, host.dtype(at::kBool));
    bool* mask_data = mask.data_ptr<bool>();
    at::Tensor labels;
    if (in.with_labels) {
      if (in.task == TaskType::kRegression) {
        labels = at::empty({seg.examples}, host.dtype(at::kFloat));
      } else if (in.task == TaskType::kClassification) {
        labels = at::empty({seg.examples}, host.dtype(at::kLong));
      } else {
        labels = at::full({seg.examples, seq_len}, -100, host.dtype(at::kLong));
      }
    }
    for (int64_t i = 0; i < seg.examples; ++i) {
      const ExampleRef& e = in.examples[i];
      const int64_t n = static_cast<int64_t>(e.ids.size());
      seg.padded = seg.padded || n < seq_len;
      if (in.task != TaskType::kTokenClassification) first_rows_.push_back(static_cast<int64_t>(ids_.size()));
      for (int64_t t = 0; t < seq_len; ++t) {
        const bool real = t < n;
        ids_.push_back(real ? e.ids[t] : pad_id_);
        types_.push_back(real && !roberta && t < static_cast<int64_t>(e.type_ids.size()) ? e.type_ids[t] : 0);
        // RoBERTa numbers real tokens from pad_token_id + 1 and gives padding pad_token_id.
        positions_.push_back(roberta ? (real ? config_.pad_token_id + 1 + t : config_.pad_token_id) : t);
        slots_.push_back(in.slot);
        mask_data[i * seq_len + t] = real;
      }
      if (!in.with_labels) continue;
      if (in.task == TaskType::kRegression) {
        labels.data_ptr<float>()[i] = e.target;
      } else if (in.task == TaskType::kClassification) {
        labels.data_ptr<int64_t>()[i] = e.label;
      } else {
        int64_t* row = labels.data_ptr<int64_t>() + i * seq_len;
        for (int64_t t = 0; t < n && t < static_cast<int64_t>(e.token_labels.size()); ++t) row[t] = e.token_labels[t];
      }
    }
    seg.attention_mask = to_device(mask);
    if (labels.defined()) seg.labels = to_device(labels);
    batch.segments.push_back(std::move(seg));
  }
  batch.segment_rows = static_cast<int64_t>(ids_.size());
  const int64_t padded = std::max<int64_t>(Batch::kRowMultiple, (batch.segment_rows + Batch::kRowMultiple - 1) /
                                                                  Batch::kRowMultiple * Batch::kRowMultiple);
  const int64_t filler_slot = segments.empty() ? 0 : segments.back().slot;
  while (static_cast<int64_t>(ids_.size()) < padded) {
    ids_.push_back(pad_id_);
    types_.push_back(0);
    positions_.push_back(roberta ? config_.pad_token_id : 0);
    slots_.push_back(filler_slot);  // its rows get no gradient, so they add exact zeros
  }
  batch.rows = padded;
  auto longs = [&](const std::vector<int64_t>& v) {
    at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, host.dtype(at::kLong));
    std::copy(v.begin(), v.end(), t.data_ptr<int64_t>());
    return to_device(t);
  };
  batch.input_ids = longs(ids_);
  batch.token_type_ids = longs(types_);
  batch.position_ids = longs(positions_);
  batch.row_slots = longs(slots_);
  batch.first_rows = longs(first_rows_);
  return batch;
}

}  // namespace bitfleet::engine
