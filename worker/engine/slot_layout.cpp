#include "worker/engine/slot_layout.h"

namespace bitfleet::engine {

using common::BiasKind;
using common::TaskType;

int64_t RowSegment::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SlotLayout::SlotLayout(const BackboneConfig& config, common::BiasKindSet table_kinds, int64_t max_labels)
    : config_(config), table_kinds_(table_kinds), max_labels_(max_labels) {
  int64_t offset = 0;
  auto add = [&](RowSegment s) {
    s.offset = offset;
    offset += s.numel();
    segments_.push_back(std::move(s));
  };
  for (int l = 0; l < config.layers; ++l) {
    for (int k = 0; k < common::kNumBiasKinds; ++k) {
      auto kind = static_cast<BiasKind>(k);
      if (!is_per_layer(kind) || !table_kinds.test(k)) continue;
      add({0, {bias_width(config, kind)}, kind, std::nullopt, l});
    }
  }
  for (BiasKind kind : {BiasKind::kEmbeddingsLayerNorm, BiasKind::kPooler}) {
    if (table_kinds.test(static_cast<int>(kind))) add({0, {config.hidden}, kind, std::nullopt, -1});
  }
  const int64_t H = config.hidden;
  if (config.architecture == Architecture::kRoberta) {
    add({0, {H, H}, std::nullopt, HeadPart::kDenseWeight, -1});
    add({0, {H}, std::nullopt, HeadPart::kDenseBias, -1});
  }
  add({0, {max_labels, H}, std::nullopt, HeadPart::kClassifierWeight, -1});
  add({0, {max_labels}, std::nullopt, HeadPart::kClassifierBias, -1});
  row_size_ = (offset + 1 + kRowAlignment - 1) / kRowAlignment * kRowAlignment;  // + the loss float
}

const RowSegment* SlotLayout::bias(BiasKind kind, int layer) const {
  if (!table_kinds_.test(static_cast<int>(kind))) return nullptr;
  for (const auto& s : segments_) {
    if (s.bias_kind == kind && (!is_per_layer(kind) || s.layer == layer)) return &s;
  }
  return nullptr;
}

const RowSegment* SlotLayout::head(HeadPart part) const {
  for (const auto& s : segments_) {
    if (s.head_part == part) return &s;
  }
  return nullptr;
}

bool SlotLayout::task_uses(TaskType task, BiasKind kind) const {
  if (kind != BiasKind::kPooler) return true;
  return config_.architecture == Architecture::kBert && task != TaskType::kTokenClassification;
}

bool SlotLayout::task_uses(TaskType task, HeadPart part) const {
  if (part == HeadPart::kClassifierWeight || part == HeadPart::kClassifierBias) return true;
  return config_.architecture == Architecture::kRoberta && task != TaskType::kTokenClassification;
}

std::string SlotLayout::hf_name(const RowSegment& s, TaskType task) const {
  if (s.bias_kind) return config_.prefix() + "." + bias_parameter_name(*s.bias_kind, s.layer);
  const bool roberta_sequence_head =
      config_.architecture == Architecture::kRoberta && task != TaskType::kTokenClassification;
  switch (*s.head_part) {
    case HeadPart::kDenseWeight: return "classifier.dense.weight";
    case HeadPart::kDenseBias: return "classifier.dense.bias";
    case HeadPart::kClassifierWeight: return roberta_sequence_head ? "classifier.out_proj.weight" : "classifier.weight";
    case HeadPart::kClassifierBias: return roberta_sequence_head ? "classifier.out_proj.bias" : "classifier.bias";
  }
  return "";
}

std::vector<int64_t> SlotLayout::task_shape(const RowSegment& s, int64_t num_outputs) const {
  if (s.head_part == HeadPart::kClassifierWeight) return {num_outputs, config_.hidden};
  if (s.head_part == HeadPart::kClassifierBias) return {num_outputs};
  return s.shape;
}

}  // namespace bitfleet::engine
