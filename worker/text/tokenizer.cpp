#include "worker/text/tokenizer.h"

#include <algorithm>

#include "worker/text/unicode.h"

namespace bitfleet::text {
namespace {

int count_specials(const std::vector<Tokenizer::TemplatePiece>& pieces) {
  return static_cast<int>(std::count_if(pieces.begin(), pieces.end(),
                                        [](const auto& p) { return p.sequence < 0; }));
}

// Byte length of the UTF-8 character that ends at `end` (exclusive).
size_t last_char_length(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return end - start;
}

char32_t char_at(std::string_view s, size_t begin, size_t length) {
  std::u32string one;
  unicode::decode_utf8(s.substr(begin, length), one);
  return one.empty() ? 0 : one[0];
}

bool is_word_char(char32_t c) {
  return c == U'_' || unicode::has(c, unicode::kLetter) || unicode::has(c, unicode::kNumber);
}

}  // namespace

Tokenizer::Tokenizer(std::string kind, std::unique_ptr<TextEncoder> encoder,
                     std::vector<AddedToken> added, std::vector<TemplatePiece> single,
                     std::vector<TemplatePiece> pair, int32_t pad_id)
    : kind_(std::move(kind)),
      encoder_(std::move(encoder)),
      added_(std::move(added)),
      single_(std::move(single)),
      pair_(std::move(pair)),
      pad_id_(pad_id) {
  // Longest first, so that at one position the longest special token wins (leftmost-longest).
  std::stable_sort(added_.begin(), added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
}

// Splits special tokens out of `text` as Hugging Face's AddedVocabulary does: leftmost-longest
// matches; lstrip/rstrip swallow the whitespace beside a match; single_word needs word boundaries.
void Tokenizer::encode_text(std::string_view text, bool as_word, std::vector<int32_t>& ids) const {
  auto encode_plain = [&](std::string_view part) {
    if (part.empty()) return;
    if (as_word) {
      encoder_->encode_word(part, ids);
    } else {
      encoder_->encode(part, ids);
    }
  };
  size_t emitted = 0;  // text before this offset is done
  size_t pos = 0;
  while (pos < text.size() && !added_.empty()) {
    const AddedToken* match = nullptr;
    for (const auto& token : added_) {
      if (text.compare(pos, token.content.size(), token.content) == 0) {
        match = &token;
        break;
      }
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + match->content.size();
    if (match->single_word) {
      bool word_before = start > 0 && is_word_char(char_at(text, start - last_char_length(text, start),
                                                             last_char_length(text, start)));
      bool word_after = false;
      if (stop < text.size()) {
        std::u32string next;
        unicode::decode_utf8(text.substr(stop, std::min<size_t>(4, text.size() - stop)), next);
        word_after = !next.empty() && is_word_char(next[0]);
      }
      if (word_before || word_after) {
        ++pos;
        continue;
      }
    }
    if (match->lstrip) {
      while (start > emitted) {
        size_t len = last_char_length(text, start);
        if (!unicode::has(char_at(text, start - len, len), unicode::kWhitespace)) break;
        start -= len;
      }
    }
    if (match->rstrip) {
      while (stop < text.size()) {
        std::u32string next;
        unicode::decode_utf8(text.substr(stop, std::min<size_t>(4, text.size() - stop)), next);
        if (next.empty() || !unicode::has(next[0], unicode::kWhitespace)) break;
        std::string encoded;
        unicode::append_utf8(next[0], encoded);
        stop += encoded.size();
      }
    }
    encode_plain(text.substr(emitted, start - emitted));
    ids.push_back(match->id);
    emitted = stop;
    pos = pos + match->content.size();
    if (pos < stop) pos = stop;
  }
  encode_plain(text.substr(emitted));
}

Encoding Tokenizer::apply_template(const std::vector<int32_t>& first, const std::vector<int32_t>* second,
                                   const std::vector<int32_t>* first_words) const {
  const auto& pieces = second ? pair_ : single_;
  Encoding out;
  for (const auto& p : pieces) {
    if (p.sequence < 0) {
      out.ids.push_back(p.id);
      out.type_ids.push_back(p.type_id);
      out.word_ids.push_back(-1);
      continue;
    }
    const auto& seq = p.sequence == 0 ? first : *second;
    for (size_t i = 0; i < seq.size(); ++i) {
      out.ids.push_back(seq[i]);
      out.type_ids.push_back(p.type_id);
      out.word_ids.push_back(p.sequence == 0 && first_words ? (*first_words)[i] : -1);
    }
  }
  return out;
}

Encoding Tokenizer::encode(std::string_view text, int max_len) const {
  std::vector<int32_t> ids;
  encode_text(text, false, ids);
  size_t room = static_cast<size_t>(std::max(0, max_len - count_specials(single_)));
  if (ids.size() > room) ids.resize(room);
  return apply_template(ids, nullptr, nullptr);
}

Encoding Tokenizer::encode_pair(std::string_view first, std::string_view second, int max_len) const {
  std::vector<int32_t> a, b;
  encode_text(first, false, a);
  encode_text(second, false, b);
  // tokenizers' truncate_encodings, strategy longest_first.
  const size_t max_length = static_cast<size_t>(std::max(0, max_len - count_specials(pair_)));
  if (a.size() + b.size() > max_length) {
    size_t n1 = a.size(), n2 = b.size();
    bool swap = n1 > n2;
    if (swap) std::swap(n1, n2);
    n2 = n1 > max_length ? n1 : std::max(n1, max_length - n1);
    if (n1 + n2 > max_length) {
      n1 = max_length / 2;
      n2 = n1 + max_length % 2;
    }
    if (swap) std::swap(n1, n2);
    a.resize(std::min(a.size(), n1));
    b.resize(std::min(b.size(), n2));
  }
  return apply_template(a, &b, nullptr);
}

Encoding Tokenizer::encode_words(const std::vector<std::string>& words, int max_len) const {
  std::vector<int32_t> ids, word_ids;
  for (size_t w = 0; w < words.size(); ++w) {
    encode_text(words[w], true, ids);
    word_ids.resize(ids.size(), static_cast<int32_t>(w));
  }
  size_t room = static_cast<size_t>(std::max(0, max_len - count_specials(single_)));
  if (ids.size() > room) {
    ids.resize(room);
    word_ids.resize(room);
  }
  return apply_template(ids, nullptr, &word_ids);
}

}  // namespace bitfleet::text
