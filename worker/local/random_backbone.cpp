#include "worker/local/random_backbone.h"

#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/safetensors.h"

namespace bitfleet::local {

using engine::Architecture;
using engine::BackboneConfig;
using engine::backbone_parameters;

namespace {

// Enough English for generated demo datasets to tokenize into real pieces.
const char* const kWords[] = {
    "the", "a", "an", "and", "or", "not", "is", "are", "was", "were", "be", "been", "it", "this",
    "that", "he", "she", "they", "we", "you", "i", "of", "to", "in", "on", "at", "for", "with", "by",
    "from", "as", "but", "if", "so", "than", "then", "very", "good", "bad", "great", "terrible",
    "movie", "film", "story", "actor", "plot", "music", "love", "hate", "like", "best", "worst",
    "fun", "boring", "funny", "sad", "happy", "long", "short", "new", "old", "big", "small", "man",
    "woman", "people", "time", "day", "year", "world", "life", "work", "city", "house", "car",
    "dog", "cat", "book", "song", "game", "team", "win", "lose", "play", "run", "walk", "say",
    "said", "make", "made", "go", "went", "see", "saw", "know", "think", "feel", "felt", "want",
    "give", "take", "come", "came", "look", "find", "tell", "ask", "seem", "leave", "call", "keep",
    "red", "blue", "green", "black", "white", "one", "two", "three", "four", "five", "first",
    "last", "next", "all", "some", "no", "yes", "every", "each", "many", "much", "more", "most",
    "other", "only", "also", "just", "well", "still", "even", "never", "always", "often", "here",
    "there", "now", "today", "noun", "verb", "adj", "adv", "det", "pron", "sentence", "word"};

std::string byte_char(int b) {
  // GPT-2's printable mapping of a byte (see worker/text/byte_level_bpe.cpp).
  static const std::vector<int> map = [] {
    std::vector<int> m(256);
    int next = 256;
    for (int i = 0; i < 256; ++i) {
      bool direct = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      m[i] = direct ? i : next++;
    }
    return m;
  }();
  int c = map[b];
  std::string out;
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
  return out;
}

Status write_bert_vocab(const RandomBackboneSpec& spec, const std::string& dir) {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  std::set<std::string> seen(vocab.begin(), vocab.end());
  auto add = [&](const std::string& t) {
    if (static_cast<int64_t>(vocab.size()) < spec.vocab_size && seen.insert(t).second) vocab.push_back(t);
  };
  for (int c = '!'; c <= '~'; ++c) {
    if (c >= 'A' && c <= 'Z') continue;  // the vocabulary is lower-cased
    add(std::string(1, static_cast<char>(c)));
  }
  for (int c = 'a'; c <= 'z'; ++c) add("##" + std::string(1, static_cast<char>(c)));
  for (int c = '0'; c <= '9'; ++c) add("##" + std::string(1, static_cast<char>(c)));
  if (static_cast<int64_t>(vocab.size()) < spec.vocab_size - 1) {
    for (const char* w : kWords) add(w);
    for (const char* suffix : {"##s", "##ing", "##ed", "##ly", "##er", "##est", "##ion", "##al"}) add(suffix);
    for (int a = 'a'; a <= 'z'; ++a) {
      for (int b = 'a'; b <= 'z'; ++b) {
        add(std::string{static_cast<char>(a), static_cast<char>(b)});
        add("##" + std::string{static_cast<char>(a), static_cast<char>(b)});
      }
    }
  }
  for (int i = 0; static_cast<int64_t>(vocab.size()) < spec.vocab_size; ++i) add("[unused" + std::to_string(i) + "]");
  if (static_cast<int64_t>(vocab.size()) < spec.vocab_size || spec.vocab_size < 100) {
    return invalid_argument("--vocab-size must be at least 100 for a BERT vocabulary");
  }
  std::string text;
  for (const auto& t : vocab) text += t + "\n";
  BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(dir + "/vocab.txt", text));
  nlohmann::json config = {{"tokenizer_class", "BertTokenizer"}, {"do_lower_case", true}, {"model_max_length", spec.max_sequence_length}};
  return common::write_file_atomic(dir + "/tokenizer_config.json", config.dump(2));
}

Status write_roberta_vocab(const RandomBackboneSpec& spec, const std::string& dir) {
  if (spec.vocab_size < 4 + 256 + 1) return invalid_argument("--vocab-size must be at least 261 for a byte-level vocabulary");
  nlohmann::ordered_json vocab;
  int32_t next = 0;
  for (const char* t : {"<s>", "<pad>", "</s>", "<unk>"}) vocab[t] = next++;
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = next++;
  std::vector<std::string> merges;
  const int32_t limit = static_cast<int32_t>(spec.vocab_size) - 1;  // the last id is <mask>
  for (const char* w : kWords) {
    for (const std::string& word : {byte_char(' ') + w, std::string(w)}) {
      // Merge characters left to right: "Ġ t" -> "Ġt", "Ġt h" -> "Ġth", ...
      std::vector<std::string> chars;
      for (size_t i = 0; i < word.size();) {
        size_t len = (static_cast<unsigned char>(word[i]) & 0x80) ? 2 : 1;
        chars.push_back(word.substr(i, len));
        i += len;
      }
      std::string current = chars[0];
      for (size_t i = 1; i < chars.size() && next < limit; ++i) {
        std::string merged = current + chars[i];
        if (!vocab.contains(merged)) {
          merges.push_back(current + " " + chars[i]);
          vocab[merged] = next++;
        }
        current = merged;
      }
    }
  }
  for (; next < limit; ++next) vocab["<unused" + std::to_string(next) + ">"] = next;
  vocab["<mask>"] = next++;
  BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(dir + "/vocab.json", vocab.dump()));
  std::string text = "#version: 0.2\n";
  for (const auto& m : merges) text += m + "\n";
  BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(dir + "/merges.txt", text));
  nlohmann::json config = {{"tokenizer_class", "RobertaTokenizer"}, {"add_prefix_space", false},
                           {"model_max_length", spec.max_sequence_length}};
  return common::write_file_atomic(dir + "/tokenizer_config.json", config.dump(2));
}

}  // namespace

Status write_random_backbone(const RandomBackboneSpec& spec, const std::string& out_dir) {
  if (spec.hidden % spec.heads != 0) return invalid_argument("--hidden must be a multiple of --heads");
  BITFLEET_RETURN_IF_ERROR(common::make_directories(out_dir));
  const bool roberta = spec.architecture == Architecture::kRoberta;
  BackboneConfig config;
  config.architecture = spec.architecture;
  config.vocab_size = spec.vocab_size;
  config.hidden = spec.hidden;
  config.layers = spec.layers;
  config.heads = spec.heads;
  config.intermediate = spec.intermediate;
  config.pad_token_id = roberta ? 1 : 0;
  config.max_positions = roberta ? spec.max_sequence_length + 2 : spec.max_sequence_length;
  config.type_vocab_size = roberta ? 1 : 2;
  config.layer_norm_eps = roberta ? 1e-5 : 1e-12;

  nlohmann::json hf = {{"architectures", {roberta ? "RobertaModel" : "BertModel"}},
                       {"model_type", roberta ? "roberta" : "bert"},
                       {"vocab_size", config.vocab_size},
                       {"hidden_size", config.hidden},
                       {"num_hidden_layers", config.layers},
                       {"num_attention_heads", config.heads},
                       {"intermediate_size", config.intermediate},
                       {"hidden_act", "gelu"},
                       {"hidden_dropout_prob", 0.1},
                       {"attention_probs_dropout_prob", 0.1},
                       {"max_position_embeddings", config.max_positions},
                       {"type_vocab_size", config.type_vocab_size},
                       {"initializer_range", 0.02},
                       {"layer_norm_eps", config.layer_norm_eps},
                       {"pad_token_id", config.pad_token_id},
                       {"position_embedding_type", "absolute"}};
  if (roberta) {
    hf["bos_token_id"] = 0;
    hf["eos_token_id"] = 2;
  }
  BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(out_dir + "/config.json", hf.dump(2)));

  auto gen = at::make_generator<at::CPUGeneratorImpl>(spec.seed);
  safetensors::Writer writer;
  for (const auto& p : backbone_parameters(config)) {
    at::Tensor t = at::empty(p.shape, at::kFloat);
    const bool layer_norm_gain = p.name.find("LayerNorm.weight") != std::string::npos;
    if (layer_norm_gain) {
      t.normal_(1.0, 0.1, gen);
    } else if (p.bias_kind || p.name.find("LayerNorm.bias") != std::string::npos) {
      t.normal_(0.0, 0.05, gen);
    } else {
      t.normal_(0.0, 0.02, gen);
    }
    writer.add(p.name, safetensors::DType::kF32, p.shape,
               {reinterpret_cast<const std::byte*>(t.data_ptr<float>()), static_cast<size_t>(t.numel()) * 4});
  }
  writer.set_metadata("format", "pt");
  BITFLEET_RETURN_IF_ERROR(writer.write_file(out_dir + "/model.safetensors"));
  return roberta ? write_roberta_vocab(spec, out_dir) : write_bert_vocab(spec, out_dir);
}

}  // namespace bitfleet::local
