// ByteLevelBpeEncoder: the RoBERTa/GPT-2 text pipeline, equal to Hugging Face `tokenizers`'
// ByteLevel pre-tokenizer + BPE model:
//   split:  GPT-2's pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//           (matched by hand, leftmost-first like Oniguruma), with an optional leading space;
//   bytes:  each piece's UTF-8 bytes mapped to the 256 printable "byte characters";
//   BPE:    repeatedly merge the adjacent pair of lowest merge rank (leftmost first on ties).
// Thread-safety: immutable after construction.
#pragma once

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "worker/text/text_encoder.h"

namespace bitfleet::text {

class ByteLevelBpeEncoder : public TextEncoder {
 public:
  // `merges` in rank order; each side names a vocabulary token.
  ByteLevelBpeEncoder(std::unordered_map<std::string, int32_t> vocab,
                      const std::vector<std::pair<std::string, std::string>>& merges,
                      bool add_prefix_space, bool ignore_merges);

  void encode(std::string_view text, std::vector<int32_t>& ids) const override;
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const override;
  std::optional<int32_t> token_id(std::string_view token) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(vocab_.size()); }

  // The pre-tokenizer alone: the pieces the pattern cuts `text` into (for tests).
  static std::vector<std::u32string> split(std::u32string_view text);

 private:
  void encode_piece(std::u32string_view piece, std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  // (left id, right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::vector<int32_t> byte_ids_;  // vocabulary id of each byte's character, -1 if absent
  bool add_prefix_space_;
  bool ignore_merges_;
};

}  // namespace bitfleet::text
