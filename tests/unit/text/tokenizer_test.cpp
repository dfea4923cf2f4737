#include "worker/text/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "worker/text/byte_level_bpe.h"
#include "worker/text/unicode.h"

namespace bitfleet::text {
namespace {

class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("bitfleet-tok-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name, const std::string& contents) const {
    std::ofstream(path_ / name) << contents;
    return path_.string();
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

std::shared_ptr<const Tokenizer> bert_vocab_txt(const TempDir& dir) {
  dir.file("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\n,\nun\n##aff\n##able\n");
  auto t = Tokenizer::load(dir.path());
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  return t.is_ok() ? t.value() : nullptr;
}

TEST(TokenizerTest, WordPieceSplitsGreedilyAndLowercases) {
  TempDir dir;
  auto tok = bert_vocab_txt(dir);
  Encoding e = tok->encode("Hello, UNAFFABLE worlds", 32);
  EXPECT_EQ(e.ids, (std::vector<int32_t>{2, 5, 8, 9, 10, 11, 6, 7, 3}));
}

TEST(TokenizerTest, UnknownWordBecomesUnk) {
  TempDir dir;
  auto tok = bert_vocab_txt(dir);
  EXPECT_EQ(tok->encode("xyz", 32).ids, (std::vector<int32_t>{2, 1, 3}));
}

TEST(TokenizerTest, SpecialTokenInTextStaysSpecial) {
  TempDir dir;
  auto tok = bert_vocab_txt(dir);
  EXPECT_EQ(tok->encode("hello [MASK] world", 32).ids, (std::vector<int32_t>{2, 5, 4, 6, 3}));
}

TEST(TokenizerTest, PairGetsTypeIdsAndLongestFirstTruncation) {
  TempDir dir;
  auto tok = bert_vocab_txt(dir);
  Encoding e = tok->encode_pair("hello hello hello hello", "world", 7);
  // 7 - 3 specials = 4 tokens: the longer first text gives up its tokens first.
  EXPECT_EQ(e.ids, (std::vector<int32_t>{2, 5, 5, 5, 3, 6, 3}));
  EXPECT_EQ(e.type_ids, (std::vector<uint8_t>{0, 0, 0, 0, 0, 1, 1}));
}

TEST(TokenizerTest, WordsKeepTheirIndex) {
  TempDir dir;
  auto tok = bert_vocab_txt(dir);
  Encoding e = tok->encode_words({"hello", "worlds"}, 32);
  EXPECT_EQ(e.word_ids, (std::vector<int32_t>{-1, 0, 1, 1, -1}));
}

TEST(TokenizerTest, MissingFilesAreNamed) {
  auto t = Tokenizer::load("/nonexistent-dir");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("/nonexistent-dir"), std::string::npos);
}

TEST(ByteLevelSplitTest, FollowsGpt2Pattern) {
  std::u32string text;
  unicode::decode_utf8("Hello world's  123 !!\n\n", text);
  auto pieces = ByteLevelBpeEncoder::split(text);
  std::vector<std::string> got;
  for (const auto& p : pieces) got.push_back(unicode::to_utf8(p));
  EXPECT_EQ(got, (std::vector<std::string>{"Hello", " world", "'s", " ", " 123", " !!", "\n\n"}));
}

}  // namespace
}  // namespace bitfleet::text
