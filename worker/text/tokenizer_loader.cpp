// Tokenizer::load: reads a Hugging Face tokenizer directory into a Tokenizer. Anything it does
// not implement exactly (another model type, normalizer, pre-tokenizer or post-processor) is
// refused with its name, rather than tokenized differently from Hugging Face.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/json_fields.h"
#include "worker/text/byte_level_bpe.h"
#include "worker/text/tokenizer.h"
#include "worker/text/wordpiece.h"

namespace bitfleet::text {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

Status unsupported(const std::string& file, const std::string& what) {
  return invalid_argument(file + ": unsupported " + what + " (bitfleet implements BERT WordPiece "
                          "and RoBERTa/GPT-2 byte-level BPE exactly as Hugging Face does)");
}

Result<json> read_json(const std::string& path) {
  BITFLEET_ASSIGN_OR_RETURN(std::string text, common::read_file(path));
  return common::parse_json(text, path);
}

// A member of an object, or null: const json::operator[] must not be used on absent keys.
const json& member(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string type_of(const json& j) { return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : ""; }

Result<std::unordered_map<std::string, int32_t>> vocab_from_json(const json& v, const std::string& file) {
  if (!v.is_object()) return invalid_argument(file + ": model.vocab is not an object");
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(v.size());
  for (const auto& [token, id] : v.items()) {
    if (!id.is_number_integer()) return invalid_argument(file + ": vocab entry \"" + token + "\" has no integer id");
    vocab.emplace(token, id.get<int32_t>());
  }
  return vocab;
}

Result<std::vector<std::pair<std::string, std::string>>> merges_from_json(const json& m, const std::string& file) {
  std::vector<std::pair<std::string, std::string>> merges;
  if (!m.is_array()) return invalid_argument(file + ": model.merges is not a list");
  merges.reserve(m.size());
  for (const auto& item : m) {
    if (item.is_string()) {  // "a b"
      const auto& s = item.get_ref<const std::string&>();
      auto space = s.find(' ');
      if (space == std::string::npos) return invalid_argument(file + ": merge \"" + s + "\" has no space");
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (item.is_array() && item.size() == 2 && item[0].is_string() && item[1].is_string()) {
      merges.emplace_back(item[0].get<std::string>(), item[1].get<std::string>());
    } else {
      return invalid_argument(file + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  return merges;
}

// The post-processor's templates for one text and for a pair.
Status read_post_processor(const json& pp, const std::string& file, const TextEncoder& encoder,
                           std::vector<Tokenizer::TemplatePiece>& single,
                           std::vector<Tokenizer::TemplatePiece>& pair) {
  const std::string type = type_of(pp);
  auto special = [](int32_t id, uint8_t type_id) { return Tokenizer::TemplatePiece{-1, id, type_id}; };
  auto sequence = [](int which, uint8_t type_id) { return Tokenizer::TemplatePiece{which, 0, type_id}; };
  if (pp.is_null()) {
    single = {sequence(0, 0)};
    pair = {sequence(0, 0), sequence(1, 1)};
    return Status::ok();
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    int32_t cls = member(pp, "cls").at(1).get<int32_t>(), sep = member(pp, "sep").at(1).get<int32_t>();
    single = {special(cls, 0), sequence(0, 0), special(sep, 0)};
    if (type == "RobertaProcessing") {  // RoBERTa has one token type
      pair = {special(cls, 0), sequence(0, 0), special(sep, 0), special(sep, 0), sequence(1, 0), special(sep, 0)};
    } else {
      pair = {special(cls, 0), sequence(0, 0), special(sep, 0), sequence(1, 1), special(sep, 1)};
    }
    return Status::ok();
  }
  if (type != "TemplateProcessing") return unsupported(file, "post_processor " + type);
  const json& specials = pp.value("special_tokens", json::object());
  auto read = [&](const json& pieces, std::vector<Tokenizer::TemplatePiece>& out) -> Status {
    for (const auto& piece : pieces) {
      if (piece.contains("Sequence")) {
        const auto& s = member(piece, "Sequence");
        out.push_back(sequence(member(s, "id") == "A" ? 0 : 1, s.value("type_id", 0)));
      } else if (piece.contains("SpecialToken")) {
        const auto& s = member(piece, "SpecialToken");
        const std::string name = member(s, "id").get<std::string>();
        std::vector<int32_t> ids;
        if (specials.contains(name)) {
          ids = member(specials.at(name), "ids").get<std::vector<int32_t>>();
        } else if (auto id = encoder.token_id(name)) {
          ids = {*id};
        } else {
          return invalid_argument(file + ": template special token \"" + name + "\" has no id");
        }
        for (int32_t id : ids) out.push_back(special(id, s.value("type_id", 0)));
      }
    }
    return Status::ok();
  };
  BITFLEET_RETURN_IF_ERROR(read(member(pp, "single"), single));
  return read(member(pp, "pair"), pair);
}

Result<std::shared_ptr<const Tokenizer>> load_tokenizer_json(const std::string& file) {
  BITFLEET_ASSIGN_OR_RETURN(json tj, read_json(file));
  try {
    const json& model = member(tj, "model");
    const std::string model_type = type_of(model);
    const json& normalizer = member(tj, "normalizer");
    const json& pre = member(tj, "pre_tokenizer");
    std::unique_ptr<TextEncoder> encoder;
    std::string kind;
    if (model_type == "WordPiece") {
      if (!normalizer.is_null() && type_of(normalizer) != "BertNormalizer") {
        return unsupported(file, "normalizer " + type_of(normalizer) + " for WordPiece");
      }
      if (type_of(pre) != "BertPreTokenizer") return unsupported(file, "pre_tokenizer " + type_of(pre) + " for WordPiece");
      BertNormalizerOptions opts;
      if (normalizer.is_null()) {
        opts = {false, false, false, false};
      } else {
        opts.clean_text = normalizer.value("clean_text", true);
        opts.handle_chinese_chars = normalizer.value("handle_chinese_chars", true);
        opts.lowercase = normalizer.value("lowercase", true);
        const json& strip = member(normalizer, "strip_accents");
        opts.strip_accents = strip.is_boolean() ? strip.get<bool>() : opts.lowercase;
      }
      BITFLEET_ASSIGN_OR_RETURN(auto vocab, vocab_from_json(member(model, "vocab"), file));
      std::string unk = model.value("unk_token", "[UNK]");
      auto unk_it = vocab.find(unk);
      if (unk_it == vocab.end()) return invalid_argument(file + ": unk_token \"" + unk + "\" is not in the vocabulary");
      int32_t unk_id = unk_it->second;
      encoder = std::make_unique<WordPieceEncoder>(std::move(vocab), opts, unk_id,
                                                   model.value("continuing_subword_prefix", "##"),
                                                   model.value("max_input_chars_per_word", size_t{100}));
      kind = "wordpiece";
    } else if (model_type == "BPE") {
      if (!normalizer.is_null()) return unsupported(file, "normalizer " + type_of(normalizer) + " for byte-level BPE");
      if (type_of(pre) != "ByteLevel" || !pre.value("use_regex", true)) {
        return unsupported(file, "pre_tokenizer " + type_of(pre) + " for BPE (only ByteLevel with its regex)");
      }
      const json& prefix = member(model, "continuing_subword_prefix");
      bool has_prefix = prefix.is_string() && !prefix.get_ref<const std::string&>().empty();
      if (!member(model, "dropout").is_null() || model.value("byte_fallback", false) || has_prefix) {
        return unsupported(file, "BPE options (dropout, byte_fallback or a subword prefix)");
      }
      BITFLEET_ASSIGN_OR_RETURN(auto vocab, vocab_from_json(member(model, "vocab"), file));
      BITFLEET_ASSIGN_OR_RETURN(auto merges, merges_from_json(member(model, "merges"), file));
      encoder = std::make_unique<ByteLevelBpeEncoder>(std::move(vocab), merges, pre.value("add_prefix_space", false),
                                                      model.value("ignore_merges", false));
      kind = "byte_level_bpe";
    } else {
      return unsupported(file, "model type \"" + model_type + "\"");
    }

    std::vector<Tokenizer::AddedToken> added;
    for (const auto& t : tj.value("added_tokens", json::array())) {
      added.push_back({t.at("content").get<std::string>(), t.at("id").get<int32_t>(), t.value("lstrip", false),
                       t.value("rstrip", false), t.value("single_word", false)});
    }
    std::vector<Tokenizer::TemplatePiece> single, pair;
    BITFLEET_RETURN_IF_ERROR(read_post_processor(member(tj, "post_processor"), file, *encoder, single, pair));
    int32_t pad_id = 0;
    if (member(member(tj, "padding"), "pad_id").is_number_integer()) {
      pad_id = member(member(tj, "padding"), "pad_id").get<int32_t>();
    } else if (auto id = encoder->token_id(kind == "wordpiece" ? "[PAD]" : "<pad>")) {
      pad_id = *id;
    }
    return std::shared_ptr<const Tokenizer>(std::make_shared<Tokenizer>(
        std::move(kind), std::move(encoder), std::move(added), std::move(single), std::move(pair), pad_id));
  } catch (const json::exception& e) {
    return invalid_argument(file + ": malformed tokenizer.json: " + e.what());
  }
}

// Special tokens of a vocabulary-file checkpoint: the given names that are in the vocabulary,
// with lstrip/rstrip/single_word as tokenizer_config.json declares them (its
// "added_tokens_decoder", or an AddedToken object under e.g. "mask_token"); absent a declaration,
// the flags transformers itself uses (all false).
std::vector<Tokenizer::AddedToken> special_tokens(const std::unordered_map<std::string, int32_t>& vocab,
                                                  std::initializer_list<const char*> names,
                                                  const json& config) {
  std::vector<Tokenizer::AddedToken> added;
  for (const char* name : names) {
    auto it = vocab.find(name);
    if (it == vocab.end()) continue;
    Tokenizer::AddedToken t{name, it->second};
    auto apply = [&](const json& decl) {
      t.lstrip = decl.value("lstrip", false);
      t.rstrip = decl.value("rstrip", false);
      t.single_word = decl.value("single_word", false);
    };
    for (const auto& [key, value] : member(config, "added_tokens_decoder").items()) {
      if (value.is_object() && value.value("content", "") == t.content) apply(value);
    }
    for (const auto& [key, value] : config.items()) {
      if (value.is_object() && value.value("content", "") == t.content) apply(value);
    }
    added.push_back(t);
  }
  return added;
}

Result<std::shared_ptr<const Tokenizer>> load_vocab_txt(const std::string& dir) {
  const std::string file = dir + "/vocab.txt";
  BITFLEET_ASSIGN_OR_RETURN(std::string text, common::read_file(file));
  std::unordered_map<std::string, int32_t> vocab;
  std::istringstream lines(text);
  std::string line;
  int32_t id = 0;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    vocab.emplace(line, id++);
  }
  json config = json::object();
  if (fs::exists(dir + "/tokenizer_config.json")) {
    BITFLEET_ASSIGN_OR_RETURN(config, read_json(dir + "/tokenizer_config.json"));
  }
  BertNormalizerOptions opts;
  opts.lowercase = config.value("do_lower_case", true);
  opts.handle_chinese_chars = config.value("tokenize_chinese_chars", true);
  opts.strip_accents = member(config, "strip_accents").is_boolean() ? member(config, "strip_accents").get<bool>() : opts.lowercase;
  auto need = [&](const char* token) -> Result<int32_t> {
    auto it = vocab.find(token);
    if (it == vocab.end()) return invalid_argument(file + ": has no " + std::string(token) + " token");
    return it->second;
  };
  BITFLEET_ASSIGN_OR_RETURN(int32_t cls, need("[CLS]"));
  BITFLEET_ASSIGN_OR_RETURN(int32_t sep, need("[SEP]"));
  BITFLEET_ASSIGN_OR_RETURN(int32_t unk, need("[UNK]"));
  int32_t pad = vocab.count("[PAD]") ? vocab["[PAD]"] : 0;
  auto added = special_tokens(vocab, {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}, config);
  auto encoder = std::make_unique<WordPieceEncoder>(std::move(vocab), opts, unk);
  using P = Tokenizer::TemplatePiece;
  return std::shared_ptr<const Tokenizer>(std::make_shared<Tokenizer>(
      "wordpiece", std::move(encoder), std::move(added), std::vector<P>{{-1, cls, 0}, {0, 0, 0}, {-1, sep, 0}},
      std::vector<P>{{-1, cls, 0}, {0, 0, 0}, {-1, sep, 0}, {1, 0, 1}, {-1, sep, 1}}, pad));
}

Result<std::shared_ptr<const Tokenizer>> load_vocab_json(const std::string& dir) {
  BITFLEET_ASSIGN_OR_RETURN(json v, read_json(dir + "/vocab.json"));
  BITFLEET_ASSIGN_OR_RETURN(auto vocab, vocab_from_json(v, dir + "/vocab.json"));
  BITFLEET_ASSIGN_OR_RETURN(std::string text, common::read_file(dir + "/merges.txt"));
  std::vector<std::pair<std::string, std::string>> merges;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    auto space = line.find(' ');
    if (space == std::string::npos) return invalid_argument(dir + "/merges.txt: line \"" + line + "\" has no space");
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  json config = json::object();
  if (fs::exists(dir + "/tokenizer_config.json")) {
    BITFLEET_ASSIGN_OR_RETURN(config, read_json(dir + "/tokenizer_config.json"));
  }
  auto need = [&](const char* token) -> Result<int32_t> {
    auto it = vocab.find(token);
    if (it == vocab.end()) return invalid_argument(dir + "/vocab.json: has no " + std::string(token) + " token");
    return it->second;
  };
  BITFLEET_ASSIGN_OR_RETURN(int32_t bos, need("<s>"));
  BITFLEET_ASSIGN_OR_RETURN(int32_t eos, need("</s>"));
  int32_t pad = vocab.count("<pad>") ? vocab["<pad>"] : 1;
  auto added = special_tokens(vocab, {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}, config);
  auto encoder = std::make_unique<ByteLevelBpeEncoder>(std::move(vocab), merges,
                                                       config.value("add_prefix_space", false), false);
  using P = Tokenizer::TemplatePiece;
  return std::shared_ptr<const Tokenizer>(std::make_shared<Tokenizer>(
      "byte_level_bpe", std::move(encoder), std::move(added), std::vector<P>{{-1, bos, 0}, {0, 0, 0}, {-1, eos, 0}},
      std::vector<P>{{-1, bos, 0}, {0, 0, 0}, {-1, eos, 0}, {-1, eos, 0}, {1, 0, 0}, {-1, eos, 0}}, pad));
}

}  // namespace

Result<std::shared_ptr<const Tokenizer>> Tokenizer::load(const std::string& dir) {
  if (fs::exists(dir + "/tokenizer.json")) return load_tokenizer_json(dir + "/tokenizer.json");
  if (fs::exists(dir + "/vocab.txt")) return load_vocab_txt(dir);
  if (fs::exists(dir + "/vocab.json") && fs::exists(dir + "/merges.txt")) return load_vocab_json(dir);
  return not_found(dir + ": no tokenizer.json, vocab.txt, or vocab.json + merges.txt");
}

}  // namespace bitfleet::text
