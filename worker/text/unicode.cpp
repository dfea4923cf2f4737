#include "worker/text/unicode.h"

#include <algorithm>
#include <array>

namespace bitfleet::text::unicode {
namespace {

struct PropertyRange {
  char32_t first, last;
  uint8_t bits;
};
struct CharMapping {
  char32_t from;
  uint16_t offset, length;
};

#include "worker/text/unicode_tables.inc"

// ASCII is most of the text in practice: answer it from a flat table.
const std::array<uint8_t, 128> kAscii = [] {
  std::array<uint8_t, 128> t{};
  for (const auto& r : kPropertyRanges) {
    for (char32_t c = r.first; c <= r.last && c < 128; ++c) t[c] = r.bits;
  }
  return t;
}();

template <size_t N, size_t P>
void append_mapped(char32_t c, const CharMapping (&table)[N], const char32_t (&pool)[P],
                   std::u32string& out) {
  auto it = std::lower_bound(std::begin(table), std::end(table), c,
                             [](const CharMapping& m, char32_t v) { return m.from < v; });
  if (it != std::end(table) && it->from == c) {
    out.append(pool + it->offset, it->length);
  } else {
    out.push_back(c);
  }
}

}  // namespace

uint8_t properties(char32_t c) {
  if (c < 128) return kAscii[c];
  auto it = std::upper_bound(std::begin(kPropertyRanges), std::end(kPropertyRanges), c,
                             [](char32_t v, const PropertyRange& r) { return v < r.first; });
  if (it == std::begin(kPropertyRanges)) return 0;
  --it;
  return c <= it->last ? it->bits : 0;
}

bool is_cjk_ideograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

void append_strip_accents(char32_t c, std::u32string& out) {
  if (c >= 0xAC00 && c <= 0xD7A3) {  // Hangul syllables: the algorithmic decomposition
    char32_t s = c - 0xAC00;
    out.push_back(0x1100 + s / 588);
    out.push_back(0x1161 + (s % 588) / 28);
    if (s % 28 != 0) out.push_back(0x11A7 + s % 28);
    return;
  }
  append_mapped(c, kStripAccents, kStripAccentsPool, out);
}

void append_lowercase(char32_t c, std::u32string& out) {
  if (c < 128) {
    out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return;
  }
  append_mapped(c, kLowercase, kLowercasePool, out);
}

bool decode_utf8(std::string_view in, std::u32string& out) {
  size_t i = 0;
  while (i < in.size()) {
    auto b0 = static_cast<unsigned char>(in[i]);
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    int extra;
    char32_t c;
    if ((b0 & 0xE0) == 0xC0) {
      extra = 1;
      c = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      extra = 2;
      c = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      extra = 3;
      c = b0 & 0x07;
    } else {
      return false;
    }
    if (i + extra >= in.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      auto b = static_cast<unsigned char>(in[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      c = (c << 6) | (b & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (c < kMin[extra] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
    out.push_back(c);
    i += extra + 1;
  }
  return true;
}

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string to_utf8(std::u32string_view in) {
  std::string out;
  out.reserve(in.size());
  for (char32_t c : in) append_utf8(c, out);
  return out;
}

}  // namespace bitfleet::text::unicode
