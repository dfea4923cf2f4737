// BatchBuilder: packs tokenized examples, grouped by slot, into a Batch on the device.
//
// Each segment's examples are padded to that segment's longest example (see batch.h). Host
// vectors are kept between calls; each kind of input (ids, masks, labels, ...) goes to the device
// in one asynchronous copy from pinned memory, whatever the number of segments, and segments
// view their part of it.
// Thread-safety: one builder per training loop.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <c10/core/Device.h>

#include "common/job_spec.h"
#include "worker/engine/backbone_config.h"
#include "worker/engine/batch.h"

namespace bitfleet::engine {

// One tokenized example, viewed (not owned).
struct ExampleRef {
  std::span<const int32_t> ids;
  std::span<const uint8_t> type_ids;
  int64_t label = 0;                       // classification
  float target = 0.0f;                     // regression
  std::span<const int32_t> token_labels;   // token classification: one per id, -100 for none
};

struct SegmentInput {
  int slot = 0;
  common::TaskType task = common::TaskType::kClassification;
  int64_t num_outputs = 2;
  std::vector<ExampleRef> examples;
  double loss_scale = 1.0;
  bool with_labels = true;
};

// Host values as a 1-D tensor on `device` (int64, float32, uint8). On a GPU through pinned memory
// and an asynchronous copy: a copy from pageable memory synchronises the stream, which would stop
// the host from running ahead of the GPU.
at::Tensor upload(std::span<const int64_t> values, c10::Device device);
at::Tensor upload(std::span<const float> values, c10::Device device);
at::Tensor upload(std::span<const uint8_t> values, c10::Device device);

class BatchBuilder {
 public:
  BatchBuilder(const BackboneConfig& config, c10::Device device, int32_t pad_id);

  Batch build(const std::vector<SegmentInput>& segments);

 private:
  void append_example(const SegmentInput& in, const ExampleRef& e, int64_t seq_len);

  BackboneConfig config_;
  c10::Device device_;
  int32_t pad_id_;
  std::vector<int64_t> ids_, types_, positions_, slots_, head_rows_, first_rows_, long_labels_;
  std::vector<uint8_t> masks_;
  std::vector<float> float_labels_;
};

}  // namespace bitfleet::engine
