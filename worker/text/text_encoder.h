// TextEncoder: one tokenizer model's text -> ids, for text that holds no special tokens.
// Tokenizer (tokenizer.h) splits special tokens out, truncates and adds the template around what
// its TextEncoder returns. Implementations: WordPieceEncoder (BERT), ByteLevelBpeEncoder
// (RoBERTa/GPT-2). Thread-safety: const methods are safe to call concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace bitfleet::text {

class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  // Appends the ids of `text` (valid UTF-8) to `ids`.
  virtual void encode(std::string_view text, std::vector<int32_t>& ids) const = 0;
  // Appends the ids of one word of a pre-split sentence (token classification), as Hugging Face
  // does for is_split_into_words=True.
  virtual void encode_word(std::string_view word, std::vector<int32_t>& ids) const = 0;
  virtual std::optional<int32_t> token_id(std::string_view token) const = 0;
  virtual int32_t vocab_size() const = 0;
};

}  // namespace bitfleet::text
