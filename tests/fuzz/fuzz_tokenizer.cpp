// The tokenizers' input path: a dataset's text through BERT's WordPiece and RoBERTa's byte-level
// BPE (small vocabularies written at start), single texts, pairs and pre-split words, with the
// truncation limits a job may set. Every id must be in the vocabulary and lengths within max_len.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "worker/text/tokenizer.h"

using bitfleet::text::Tokenizer;

namespace {

std::vector<std::shared_ptr<const Tokenizer>> tokenizers;

void write(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }

void check(const bitfleet::text::Encoding& e, const Tokenizer& t, int max_len) {
  if (static_cast<int>(e.ids.size()) > max_len || e.type_ids.size() != e.ids.size()) __builtin_trap();
  for (int32_t id : e.ids) {
    if (id < 0 || id >= t.vocab_size()) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto root = std::filesystem::temp_directory_path() / ("bitfleet-fuzz-tok-" + std::to_string(::getpid()));
  std::filesystem::create_directories(root / "bert");
  std::filesystem::create_directories(root / "roberta");
  write(root / "bert" / "vocab.txt",
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\n,\nun\n##aff\n##able\n\xe4\xb8\xad\n##\xc3\xa9\n.\n");
  write(root / "roberta" / "vocab.json",
        R"({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "h": 5, "e": 6, "l": 7, "o": 8, "he": 9,
            "ll": 10, "hell": 11, "hello": 12, "\u0120": 13, "\u0120hello": 14, "w": 15, "r": 16, "d": 17})");
  write(root / "roberta" / "merges.txt", "#version: 0.2\nh e\nl l\nhe ll\nhell o\n\xc4\xa0 hello\n");
  for (const char* kind : {"bert", "roberta"}) {
    auto t = Tokenizer::load((root / kind).string());
    if (!t.is_ok()) {
      std::fprintf(stderr, "fuzz_tokenizer: %s: %s\n", kind, t.status().to_string().c_str());
      std::abort();
    }
    tokenizers.push_back(*t);
  }
  std::filesystem::remove_all(root);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // A job's max_seq_len is at least 8 (common/job_spec.cpp), more than any template's specials.
  const int max_len = 8 + data[0] % 57;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t tab = text.find('\t');
  std::vector<std::string> words;
  for (size_t start = 0; start <= text.size();) {
    size_t space = text.find(' ', start);
    if (space == std::string::npos) space = text.size();
    words.push_back(text.substr(start, space - start));
    start = space + 1;
  }
  for (const auto& t : tokenizers) {
    check(t->encode(text, max_len), *t, max_len);
    if (tab != std::string::npos) check(t->encode_pair(text.substr(0, tab), text.substr(tab + 1), max_len), *t, max_len);
    auto e = t->encode_words(words, max_len);
    check(e, *t, max_len);
    if (e.word_ids.size() != e.ids.size()) __builtin_trap();
  }
  return 0;
}
