// Writes a randomly initialised BERT or RoBERTa checkpoint in Hugging Face format, with a
// vocabulary, that both `transformers` and bitfleet load. For tests and demos: weights are drawn
// from a seeded generator, and biases and LayerNorm parameters are random too (not zeros and
// ones), so that BitFit gradients and parity checks exercise every term.
//
//   BERT:    config.json, model.safetensors, vocab.txt, tokenizer_config.json
//   RoBERTa: config.json, model.safetensors, vocab.json, merges.txt, tokenizer_config.json
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "worker/engine/backbone_config.h"

namespace bitfleet::local {

struct RandomBackboneSpec {
  engine::Architecture architecture = engine::Architecture::kBert;
  int64_t layers = 2;
  int64_t hidden = 64;
  int64_t heads = 4;
  int64_t intermediate = 128;
  int64_t vocab_size = 1000;
  int64_t max_sequence_length = 512;
  uint64_t seed = 0;
};

Status write_random_backbone(const RandomBackboneSpec& spec, const std::string& out_dir);

}  // namespace bitfleet::local
