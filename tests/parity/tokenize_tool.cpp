// Test tool for tests/parity/test_tokenizers.py: tokenizes JSON lines with bitfleet's Tokenizer.
//   tokenize_tool DIR < in.jsonl > out.jsonl
// in:  {"a": "...", "b": "..." | null, "words": [...] | null, "max_len": N}
// out: {"ids": [...], "type_ids": [...], "word_ids": [...]}
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "worker/text/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenize_tool DIR < in.jsonl\n";
    return 2;
  }
  auto tok = bitfleet::text::Tokenizer::load(argv[1]);
  if (!tok.is_ok()) {
    std::cerr << tok.status().to_string() << "\n";
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    auto in = nlohmann::json::parse(line);
    int max_len = in["max_len"].get<int>();
    bitfleet::text::Encoding e;
    if (in.contains("words") && !in["words"].is_null()) {
      e = (*tok)->encode_words(in["words"].get<std::vector<std::string>>(), max_len);
    } else if (in.contains("b") && !in["b"].is_null()) {
      e = (*tok)->encode_pair(in["a"].get<std::string>(), in["b"].get<std::string>(), max_len);
    } else {
      e = (*tok)->encode(in["a"].get<std::string>(), max_len);
    }
    std::cout << nlohmann::json({{"ids", e.ids}, {"type_ids", e.type_ids}, {"word_ids", e.word_ids}}).dump()
              << "\n";
  }
  return 0;
}
