#include "worker/text/byte_level_bpe.h"

#include <queue>

#include "worker/text/unicode.h"

namespace bitfleet::text {
namespace {

// GPT-2's reversible byte -> printable character map: printable Latin-1 bytes map to themselves,
// the other 68 to U+0100 onwards.
std::vector<char32_t> byte_characters() {
  std::vector<char32_t> map(256, 0);
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) map[b] = direct[b] ? static_cast<char32_t>(b) : next++;
  return map;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

bool is_letter(char32_t c) { return unicode::has(c, unicode::kLetter); }
bool is_number(char32_t c) { return unicode::has(c, unicode::kNumber); }
bool is_space(char32_t c) { return unicode::has(c, unicode::kRegexSpace); }
bool is_other(char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

// Length of the GPT-2 pattern's match at `i` (always >= 1 when i < text.size()).
size_t match_at(std::u32string_view t, size_t i) {
  const size_t n = t.size();
  if (t[i] == U'\'' && i + 1 < n) {
    static const std::u32string_view kContractions[] = {U"s", U"t", U"re", U"ve", U"m", U"ll", U"d"};
    for (auto c : kContractions) {
      if (t.substr(i + 1, c.size()) == c) return 1 + c.size();
    }
  }
  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" in that order.
  for (auto cls : {is_letter, is_number, is_other}) {
    size_t j = i;
    if (t[j] == U' ' && j + 1 < n && cls(t[j + 1])) ++j;
    if (!cls(t[j])) continue;
    while (j < n && cls(t[j])) ++j;
    return j - i;
  }
  // "\s+(?!\S)": the whitespace run, giving back its last character when a non-space follows.
  size_t j = i;
  while (j < n && is_space(t[j])) ++j;
  if (j == n) return j - i;
  if (j - i >= 2) return j - i - 1;
  return j - i;  // "\s+": a single space before a non-space
}

}  // namespace

ByteLevelBpeEncoder::ByteLevelBpeEncoder(std::unordered_map<std::string, int32_t> vocab,
                                         const std::vector<std::pair<std::string, std::string>>& merges,
                                         bool add_prefix_space, bool ignore_merges)
    : vocab_(std::move(vocab)), add_prefix_space_(add_prefix_space), ignore_merges_(ignore_merges) {
  const auto chars = byte_characters();
  byte_ids_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    std::string s;
    unicode::append_utf8(chars[b], s);
    auto it = vocab_.find(s);
    if (it != vocab_.end()) byte_ids_[b] = it->second;
  }
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    auto a = vocab_.find(merges[rank].first);
    auto b = vocab_.find(merges[rank].second);
    auto merged = vocab_.find(merges[rank].first + merges[rank].second);
    if (a == vocab_.end() || b == vocab_.end() || merged == vocab_.end()) continue;
    merges_.try_emplace(pair_key(a->second, b->second), static_cast<int32_t>(rank), merged->second);
  }
}

std::optional<int32_t> ByteLevelBpeEncoder::token_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::u32string> ByteLevelBpeEncoder::split(std::u32string_view text) {
  std::vector<std::u32string> pieces;
  for (size_t i = 0; i < text.size();) {
    size_t len = match_at(text, i);
    pieces.emplace_back(text.substr(i, len));
    i += len;
  }
  return pieces;
}

void ByteLevelBpeEncoder::encode(std::string_view text, std::vector<int32_t>& ids) const {
  std::u32string chars;
  if (add_prefix_space_ && (text.empty() || text[0] != ' ')) chars.push_back(U' ');
  if (!unicode::decode_utf8(text, chars)) return;  // validated at the dataset boundary
  for (size_t i = 0; i < chars.size();) {
    size_t len = match_at(chars, i);
    encode_piece(std::u32string_view(chars).substr(i, len), ids);
    i += len;
  }
}

void ByteLevelBpeEncoder::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  // Hugging Face needs add_prefix_space=True for pre-split words: every word gets its space.
  std::string spaced = word.empty() || word[0] != ' ' ? " " + std::string(word) : std::string(word);
  std::u32string chars;
  if (!unicode::decode_utf8(spaced, chars)) return;
  for (size_t i = 0; i < chars.size();) {
    size_t len = match_at(chars, i);
    encode_piece(std::u32string_view(chars).substr(i, len), ids);
    i += len;
  }
}

void ByteLevelBpeEncoder::encode_piece(std::u32string_view piece, std::vector<int32_t>& ids) const {
  std::string bytes = unicode::to_utf8(piece);
  if (ignore_merges_) {
    static const auto chars = byte_characters();
    std::string mapped;
    for (unsigned char b : bytes) unicode::append_utf8(chars[b], mapped);
    auto it = vocab_.find(mapped);
    if (it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  // Symbols as a doubly linked list over the piece's bytes; merges popped lowest rank first,
  // then leftmost, as tokenizers' Word::merge_all does.
  struct Symbol {
    int32_t id;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(bytes.size());
  for (unsigned char b : bytes) {
    if (byte_ids_[b] < 0) continue;  // no unk token in byte-level BPE: an unknown byte drops out
    int idx = static_cast<int>(symbols.size());
    symbols.push_back({byte_ids_[b], idx - 1, idx + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank;
    int pos;
    int32_t merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](int left) {
    int right = symbols[left].next;
    if (right < 0) return;
    auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push({it->second.first, left, it->second.second});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.merged) continue;  // stale entry
    left.id = top.merged;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (const auto& s : symbols) {
    if (s.alive) ids.push_back(s.id);
  }
}

}  // namespace bitfleet::text
