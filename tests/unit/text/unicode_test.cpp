#include "worker/text/unicode.h"

#include <gtest/gtest.h>

namespace bitfleet::text::unicode {
namespace {

TEST(UnicodeTest, Utf8RoundTripsEveryPlane) {
  std::u32string cps = {U'a', 0xE9, 0x4E2D, 0x1F970, 0x10FFFF};
  std::u32string back;
  ASSERT_TRUE(decode_utf8(to_utf8(cps), back));
  EXPECT_EQ(back, cps);
}

TEST(UnicodeTest, MalformedUtf8IsRejected) {
  std::u32string out;
  EXPECT_FALSE(decode_utf8("\xC3", out));          // truncated
  EXPECT_FALSE(decode_utf8("\xC0\xAF", out));      // overlong '/'
  EXPECT_FALSE(decode_utf8("\xED\xA0\x80", out));  // a surrogate
  EXPECT_FALSE(decode_utf8("\xFF", out));
}

TEST(UnicodeTest, BertCategories) {
  EXPECT_TRUE(has(U'\t', kCleanSpace));
  EXPECT_TRUE(has(0x00, kCleanRemove));
  EXPECT_TRUE(has(0x200B, kCleanRemove));  // zero-width space is a format character
  EXPECT_TRUE(has(U'!', kBertPunct));
  EXPECT_TRUE(has(U'$', kBertPunct));      // ASCII symbols count as punctuation for BERT
  EXPECT_TRUE(has(0x3000, kWhitespace));   // ideographic space
  EXPECT_FALSE(has(U'a', kBertPunct) || has(U'a', kWhitespace));
  EXPECT_TRUE(is_cjk_ideograph(0x4E2D));
  EXPECT_FALSE(is_cjk_ideograph(0x3042));  // hiragana is not
}

TEST(UnicodeTest, StripAccentsAndLowercase) {
  std::u32string out;
  append_strip_accents(0xE9, out);  // é -> e
  EXPECT_EQ(out, U"e");
  out.clear();
  append_strip_accents(0xD55C, out);  // 한 -> ᄒ ᅡ ᆫ
  EXPECT_EQ(out, (std::u32string{0x1112, 0x1161, 0x11AB}));
  out.clear();
  append_lowercase(0x130, out);  // İ lowercases to i + combining dot
  EXPECT_EQ(out, (std::u32string{U'i', 0x307}));
}

}  // namespace
}  // namespace bitfleet::text::unicode
