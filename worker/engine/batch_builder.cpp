#include "worker/engine/batch_builder.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace bitfleet::engine {

using common::TaskType;

namespace {

template <typename T>
at::Tensor upload_as(std::span<const T> values, at::ScalarType dtype, c10::Device device) {
  const bool gpu = device.is_cuda();
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(dtype).pinned_memory(gpu));
  std::copy(values.begin(), values.end(), static_cast<T*>(t.data_ptr()));
  return gpu ? t.to(device, /*non_blocking=*/true) : t;
}

}  // namespace

at::Tensor upload(std::span<const int64_t> values, c10::Device device) { return upload_as(values, at::kLong, device); }
at::Tensor upload(std::span<const float> values, c10::Device device) { return upload_as(values, at::kFloat, device); }
at::Tensor upload(std::span<const uint8_t> values, c10::Device device) { return upload_as(values, at::kByte, device); }

BatchBuilder::BatchBuilder(const BackboneConfig& config, c10::Device device, int32_t pad_id)
    : config_(config), device_(device), pad_id_(pad_id) {}

// One example's rows (padded to seq_len) and labels into the host vectors.
void BatchBuilder::append_example(const SegmentInput& in, const ExampleRef& e, int64_t seq_len) {
  const bool roberta = config_.architecture == Architecture::kRoberta;
  const int64_t n = static_cast<int64_t>(e.ids.size());
  const bool tokens = in.task == TaskType::kTokenClassification;
  if (!tokens) first_rows_.push_back(static_cast<int64_t>(head_rows_.size()));
  for (int64_t t = 0; t < (tokens ? seq_len : 1); ++t) head_rows_.push_back(static_cast<int64_t>(ids_.size()) + t);
  for (int64_t t = 0; t < seq_len; ++t) {
    const bool real = t < n;
    ids_.push_back(real ? e.ids[t] : pad_id_);
    types_.push_back(real && !roberta && t < static_cast<int64_t>(e.type_ids.size()) ? e.type_ids[t] : 0);
    // RoBERTa numbers real tokens from pad_token_id + 1 and gives padding pad_token_id.
    positions_.push_back(roberta ? (real ? config_.pad_token_id + 1 + t : config_.pad_token_id) : t);
    slots_.push_back(in.slot);
    masks_.push_back(real ? 1 : 0);
  }
  if (!in.with_labels) return;
  if (in.task == TaskType::kRegression) {
    float_labels_.push_back(e.target);
  } else if (in.task == TaskType::kClassification) {
    long_labels_.push_back(e.label);
  } else {
    for (int64_t t = 0; t < seq_len; ++t) {
      const bool labelled = t < n && t < static_cast<int64_t>(e.token_labels.size());
      long_labels_.push_back(labelled ? e.token_labels[t] : -100);
    }
  }
}

Batch BatchBuilder::build(const std::vector<SegmentInput>& segments) {
  const bool roberta = config_.architecture == Architecture::kRoberta;
  ids_.clear();
  types_.clear();
  positions_.clear();
  slots_.clear();
  first_rows_.clear();
  head_rows_.clear();
  masks_.clear();
  long_labels_.clear();
  float_labels_.clear();
  // Where each segment's mask and labels start in the packed host vectors.
  struct Offsets {
    size_t mask = 0, labels = 0;
  };
  std::vector<Offsets> offsets;
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
    offsets.push_back({masks_.size(), in.task == TaskType::kRegression ? float_labels_.size() : long_labels_.size()});
    for (const ExampleRef& e : in.examples) {
      seg.padded = seg.padded || static_cast<int64_t>(e.ids.size()) < seq_len;
      append_example(in, e, seq_len);
    }
    batch.segments.push_back(std::move(seg));
  }
  batch.segment_rows = static_cast<int64_t>(ids_.size());
  auto padded_rows = [](int64_t n) {
    return std::max<int64_t>(Batch::kRowMultiple, (n + Batch::kRowMultiple - 1) / Batch::kRowMultiple * Batch::kRowMultiple);
  };
  const int64_t padded = padded_rows(batch.segment_rows);
  const int64_t filler_slot = segments.empty() ? 0 : segments.back().slot;
  while (static_cast<int64_t>(ids_.size()) < padded) {
    ids_.push_back(pad_id_);
    types_.push_back(0);
    positions_.push_back(roberta ? config_.pad_token_id : 0);
    slots_.push_back(filler_slot);  // its rows get no gradient, so they add exact zeros
  }
  batch.rows = padded;
  batch.head_segment_rows = static_cast<int64_t>(head_rows_.size());
  head_rows_.resize(padded_rows(batch.head_segment_rows), 0);

  // One host buffer and one asynchronous copy per kind of input, whatever the number of segments.
  batch.input_ids = upload(ids_, device_);
  batch.token_type_ids = upload(types_, device_);
  batch.position_ids = upload(positions_, device_);
  batch.row_slots = upload(slots_, device_);
  batch.head_rows = upload(head_rows_, device_);
  batch.first_rows = upload(first_rows_, device_);
  at::Tensor masks = upload(masks_, device_).to(at::kBool);
  at::Tensor long_labels = upload(long_labels_, device_), float_labels = upload(float_labels_, device_);
  for (size_t i = 0; i < segments.size(); ++i) {
    BatchSegment& seg = batch.segments[i];
    const int64_t cells = seg.examples * seg.seq_len;
    seg.attention_mask = masks.narrow(0, static_cast<int64_t>(offsets[i].mask), cells).view({seg.examples, seg.seq_len});
    if (!segments[i].with_labels) continue;
    const auto begin = static_cast<int64_t>(offsets[i].labels);
    switch (seg.task) {
      case TaskType::kRegression: seg.labels = float_labels.narrow(0, begin, seg.examples); break;
      case TaskType::kClassification: seg.labels = long_labels.narrow(0, begin, seg.examples); break;
      case TaskType::kTokenClassification:
        seg.labels = long_labels.narrow(0, begin, cells).view({seg.examples, seg.seq_len});
        break;
    }
  }
  return batch;
}

}  // namespace bitfleet::engine
