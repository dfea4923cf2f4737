// Tokenizer: turns a task's text into model inputs exactly as Hugging Face `tokenizers` does for
// the same backbone directory.
//
// Loaded from a Hugging Face directory: tokenizer.json when present (WordPiece or byte-level
// BPE, with its normalizer, pre-tokenizer, post-processor and special tokens), else vocab.txt
// (BERT) or vocab.json + merges.txt (RoBERTa) with tokenizer_config.json's options. Encoding:
//   1. special tokens written in the text ("[SEP]", "<mask>") are split out as themselves;
//   2. the rest goes through the model's TextEncoder;
//   3. truncation "longest_first" to max_len minus the template's special tokens;
//   4. the post-processor's template adds [CLS]/[SEP] (or <s>/</s>) and token type ids.
// Thread-safety: immutable after load(); encode from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/text/text_encoder.h"

namespace bitfleet::text {

struct Encoding {
  std::vector<int32_t> ids;
  std::vector<uint8_t> type_ids;
  // For encode_words(): the index of the word each token came from, -1 for special tokens.
  std::vector<int32_t> word_ids;
};

class Tokenizer {
 public:
  static Result<std::shared_ptr<const Tokenizer>> load(const std::string& dir);

  Encoding encode(std::string_view text, int max_len) const;
  Encoding encode_pair(std::string_view first, std::string_view second, int max_len) const;
  // A pre-split sentence (token classification); word_ids maps tokens back to words.
  Encoding encode_words(const std::vector<std::string>& words, int max_len) const;

  int32_t pad_id() const { return pad_id_; }
  int32_t vocab_size() const { return encoder_->vocab_size(); }
  // "wordpiece" or "byte_level_bpe".
  const std::string& kind() const { return kind_; }

  struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
  };
  struct TemplatePiece {
    int sequence = -1;  // 0: first text, 1: second text, -1: the special token `id`
    int32_t id = 0;
    uint8_t type_id = 0;
  };

  // Assembled by the loader (tokenizer_loader.cpp).
  Tokenizer(std::string kind, std::unique_ptr<TextEncoder> encoder, std::vector<AddedToken> added,
            std::vector<TemplatePiece> single, std::vector<TemplatePiece> pair, int32_t pad_id);

 private:
  // Appends the ids of `text`, with special tokens written in it split out.
  void encode_text(std::string_view text, bool as_word, std::vector<int32_t>& ids) const;
  Encoding apply_template(const std::vector<int32_t>& first, const std::vector<int32_t>* second,
                          const std::vector<int32_t>* first_words) const;

  std::string kind_;
  std::unique_ptr<TextEncoder> encoder_;
  std::vector<AddedToken> added_;
  std::vector<TemplatePiece> single_;
  std::vector<TemplatePiece> pair_;
  int32_t pad_id_;
};

}  // namespace bitfleet::text
