// WordPieceEncoder: BERT's text pipeline, equal to Hugging Face `tokenizers`' BertNormalizer +
// BertPreTokenizer + WordPiece:
//   normalize: drop control characters and turn whitespace into ' ' (clean_text), surround CJK
//              ideographs with spaces, strip accents (NFD minus non-spacing marks), lowercase;
//   split:     on whitespace, and isolate every punctuation character;
//   WordPiece: greedy longest-match-first with the "##" continuation prefix; a word longer than
//              max_input_chars_per_word characters, or with no segmentation, becomes [UNK].
// Thread-safety: immutable after construction.
#pragma once

#include <string>
#include <unordered_map>

#include "worker/text/text_encoder.h"

namespace bitfleet::text {

struct BertNormalizerOptions {
  bool clean_text = true;
  bool handle_chinese_chars = true;
  bool strip_accents = true;
  bool lowercase = true;
};

class WordPieceEncoder : public TextEncoder {
 public:
  WordPieceEncoder(std::unordered_map<std::string, int32_t> vocab, BertNormalizerOptions options,
                   int32_t unk_id, std::string continuing_prefix = "##",
                   size_t max_input_chars_per_word = 100);

  void encode(std::string_view text, std::vector<int32_t>& ids) const override;
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const override;
  std::optional<int32_t> token_id(std::string_view token) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(vocab_.size()); }

 private:
  std::u32string normalize(std::u32string_view text) const;
  void encode_piece(std::u32string_view word, std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  BertNormalizerOptions options_;
  int32_t unk_id_;
  std::string continuing_prefix_;
  size_t max_input_chars_per_word_;
};

}  // namespace bitfleet::text
