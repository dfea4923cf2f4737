#include "worker/text/wordpiece.h"

#include "worker/text/unicode.h"

namespace bitfleet::text {

WordPieceEncoder::WordPieceEncoder(std::unordered_map<std::string, int32_t> vocab,
                                   BertNormalizerOptions options, int32_t unk_id,
                                   std::string continuing_prefix, size_t max_input_chars_per_word)
    : vocab_(std::move(vocab)),
      options_(options),
      unk_id_(unk_id),
      continuing_prefix_(std::move(continuing_prefix)),
      max_input_chars_per_word_(max_input_chars_per_word) {}

std::optional<int32_t> WordPieceEncoder::token_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

// The four BertNormalizer steps in its order; each maps one character to zero or more, so they
// compose character by character.
std::u32string WordPieceEncoder::normalize(std::u32string_view text) const {
  std::u32string out;
  out.reserve(text.size() + 8);
  std::u32string stripped;
  for (char32_t c : text) {
    if (options_.clean_text) {
      uint8_t p = unicode::properties(c);
      if (p & unicode::kCleanRemove) continue;
      if (p & unicode::kCleanSpace) c = U' ';
    }
    bool cjk = options_.handle_chinese_chars && unicode::is_cjk_ideograph(c);
    if (cjk) out.push_back(U' ');
    stripped.clear();
    if (options_.strip_accents) {
      unicode::append_strip_accents(c, stripped);
    } else {
      stripped.push_back(c);
    }
    for (char32_t s : stripped) {
      if (options_.lowercase) {
        unicode::append_lowercase(s, out);
      } else {
        out.push_back(s);
      }
    }
    if (cjk) out.push_back(U' ');
  }
  return out;
}

void WordPieceEncoder::encode(std::string_view text, std::vector<int32_t>& ids) const {
  std::u32string chars;
  if (!unicode::decode_utf8(text, chars)) {
    // Callers validate UTF-8 at the dataset boundary; here a bad byte only means [UNK].
    ids.push_back(unk_id_);
    return;
  }
  std::u32string normalized = normalize(chars);
  // BertPreTokenizer: split on whitespace (removed), isolate punctuation.
  size_t start = 0;
  auto flush = [&](size_t end) {
    if (end > start) encode_piece(std::u32string_view(normalized).substr(start, end - start), ids);
  };
  for (size_t i = 0; i < normalized.size(); ++i) {
    uint8_t p = unicode::properties(normalized[i]);
    if (p & unicode::kWhitespace) {
      flush(i);
      start = i + 1;
    } else if (p & unicode::kBertPunct) {
      flush(i);
      encode_piece(std::u32string_view(normalized).substr(i, 1), ids);
      start = i + 1;
    }
  }
  flush(normalized.size());
}

void WordPieceEncoder::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  encode(word, ids);
}

void WordPieceEncoder::encode_piece(std::u32string_view word, std::vector<int32_t>& ids) const {
  if (word.size() > max_input_chars_per_word_) {
    ids.push_back(unk_id_);
    return;
  }
  // Byte offsets of character boundaries, so candidate substrings are slices of one UTF-8 string.
  std::string utf8;
  std::vector<size_t> offsets;
  offsets.reserve(word.size() + 1);
  for (char32_t c : word) {
    offsets.push_back(utf8.size());
    unicode::append_utf8(c, utf8);
  }
  offsets.push_back(utf8.size());

  const size_t first = ids.size();
  std::string candidate;
  size_t start = 0;
  while (start < word.size()) {
    size_t end = word.size();
    std::optional<int32_t> found;
    while (start < end) {
      candidate.assign(start > 0 ? continuing_prefix_ : std::string());
      candidate.append(utf8, offsets[start], offsets[end] - offsets[start]);
      auto it = vocab_.find(candidate);
      if (it != vocab_.end()) {
        found = it->second;
        break;
      }
      --end;
    }
    if (!found) {
      ids.resize(first);
      ids.push_back(unk_id_);
      return;
    }
    ids.push_back(*found);
    start = end;
  }
}

}  // namespace bitfleet::text
