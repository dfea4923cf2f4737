// bitfleet-train: train a batch of tasks locally (no coordinator), and tools around the engine.
//
//   bitfleet-train run --spec FILE.json --out DIR [--threads N] [--device cpu|cuda]
//                  [--dtype auto|fp32|bf16] [--checkpoint-every N] [--stop-after-steps N] [--resume]
//                  [--collective-timeout S] [--rows-per-pass N]
//   bitfleet-train describe DIR [--bias-terms X] [--json]
//   bitfleet-train random-backbone --arch bert|roberta --layers L --hidden H --heads A
//                  --intermediate I --vocab-size V --out DIR [--seed N] [--max-seq-len N]
//
// This file only parses flags and calls the engine.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/flags.h"
#include "common/job_spec.h"
#include "common/log.h"
#include "common/precision.h"
#include "worker/comm/factory.h"
#include "worker/engine/backbone_config.h"
#include "worker/local/local_run.h"
#include "worker/local/random_backbone.h"

namespace {

using namespace bitfleet;

constexpr const char* kUsage =
    "usage: bitfleet-train run --spec FILE.json --out DIR [--threads N] [--device cpu|cuda]\n"
    "                      [--dtype auto|fp32|bf16] [--checkpoint-every N] [--stop-after-steps N] [--resume]\n"
    "                      [--collective-timeout S] [--rows-per-pass N]\n"
    "       bitfleet-train describe DIR [--bias-terms all|query+intermediate|KIND,KIND...] [--json]\n"
    "       bitfleet-train random-backbone --arch bert|roberta --layers L --hidden H --heads A\n"
    "                      --intermediate I --vocab-size V --out DIR [--seed N] [--max-seq-len N]\n";

int fail(const Status& s) {
  std::cerr << "bitfleet-train: " << s.message() << "\n";
  return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

Result<common::BiasKindSet> parse_bias_terms(const std::string& text) {
  nlohmann::json j;
  if (text == "all" || text == "query+intermediate") {
    j = text;
  } else {
    j = nlohmann::json::array();
    size_t start = 0;
    while (start <= text.size()) {
      size_t comma = text.find(',', start);
      j.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  nlohmann::json request = {{"backbone", "x"}, {"train_file", "x"},
                            {"task", {{"type", "regression"}, {"text_fields", {"t"}}, {"label_field", "y"}}},
                            {"hyperparameters", {{"bias_terms", j}}}};
  auto parsed = common::parse_job_request(request, common::FileRefs::kLocalPaths);
  if (!parsed.is_ok()) return invalid_argument("--bias-terms: " + parsed.status().message());
  return parsed->hyperparameters.bias_terms;
}

int describe(common::Flags& flags) {
  auto extra = flags.optional_string("bias-terms");
  bool json = flags.boolean("json");
  if (Status s = flags.finish(); !s.is_ok()) return fail(s);
  if (flags.positionals().size() != 2) {
    std::cerr << kUsage;
    return 2;
  }
  auto config = engine::BackboneConfig::load(flags.positionals()[1]);
  if (!config.is_ok()) return fail(config.status());
  std::vector<std::pair<std::string, common::BiasKindSet>> sets = {
      {"all", common::all_bias_kinds()}, {"query+intermediate", common::query_intermediate_bias_kinds()}};
  if (extra) {
    auto kinds = parse_bias_terms(*extra);
    if (!kinds.is_ok()) return fail(kinds.status());
    std::string name = common::bias_terms_name(*kinds);
    if (name != "all" && name != "query+intermediate") sets.emplace_back(name, *kinds);
  }
  nlohmann::ordered_json out;
  const int64_t total = engine::count_parameters(*config, {}).total;
  out["total_parameters"] = total;
  for (const auto& [name, kinds] : sets) {
    int64_t biases = engine::count_parameters(*config, kinds).biases;
    out["bias_parameters"][name] = biases;
    out["fraction"][name] = static_cast<double>(biases) / static_cast<double>(total);
  }
  if (json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("total parameters: %lld\n", static_cast<long long>(total));
  for (const auto& [name, kinds] : sets) {
    std::printf("bias terms %-20s %10lld  (%.3f%%)\n", name.c_str(),
                static_cast<long long>(out["bias_parameters"][name].get<int64_t>()),
                100.0 * out["fraction"][name].get<double>());
  }
  return 0;
}

int random_backbone(common::Flags& flags) {
  local::RandomBackboneSpec spec;
  std::string arch = flags.string("arch");
  spec.layers = flags.integer("layers", 1, 48, std::nullopt);
  spec.hidden = flags.integer("hidden", 8, 8192, std::nullopt);
  spec.heads = flags.integer("heads", 1, 128, std::nullopt);
  spec.intermediate = flags.integer("intermediate", 1, 65536, std::nullopt);
  spec.vocab_size = flags.integer("vocab-size", 100, 1'000'000, std::nullopt);
  spec.max_sequence_length = flags.integer("max-seq-len", 8, 4096, 512);
  spec.seed = static_cast<uint64_t>(flags.integer("seed", 0, INT64_MAX, 0));
  std::string out = flags.string("out");
  if (Status s = flags.finish(); !s.is_ok()) return fail(s);
  if (arch != "bert" && arch != "roberta") return fail(invalid_argument("--arch must be bert or roberta"));
  spec.architecture = arch == "bert" ? engine::Architecture::kBert : engine::Architecture::kRoberta;
  if (Status s = local::write_random_backbone(spec, out); !s.is_ok()) return fail(s);
  std::cout << out << "\n";
  return 0;
}

int run(common::Flags& flags, int* argc, char*** argv) {
  local::LocalRunOptions options;
  options.spec_path = flags.string("spec");
  options.out_dir = flags.string("out");
  options.threads = static_cast<int>(flags.integer("threads", 0, 256, 0));
  options.device = flags.string("device", "cpu");
  options.dtype = flags.string("dtype", "auto");
  options.checkpoint_every = flags.integer("checkpoint-every", 0, INT64_MAX, 0);
  options.stop_after_steps = flags.integer("stop-after-steps", 0, INT64_MAX, 0);
  options.resume = flags.boolean("resume");
  options.rows_per_pass = flags.integer("rows-per-pass", -1, 1 << 30, -1);
  const int64_t timeout = flags.integer("collective-timeout", 1, 86400, 300);
  if (Status s = flags.finish(); !s.is_ok()) return fail(s);
  if (options.device != "cpu" && options.device != "cuda") return fail(invalid_argument("--device must be cpu or cuda"));
  if (auto d = common::choose_dtype(options.dtype, false, {}, "--dtype"); !d.is_ok()) return fail(d.status());
  comm::CommunicatorOptions copts;
  copts.timeout = std::chrono::seconds(timeout);
  if (options.device == "cuda" && comm::launched_by_mpi()) copts.backend = "nccl";
  auto communicator = comm::make_communicator(copts, argc, argv);
  if (!communicator.is_ok()) return fail(communicator.status());
  if ((*communicator)->size() > 1) set_log_role("bitfleet-train rank " + std::to_string((*communicator)->rank()));
  Status s = local::run_local(options, **communicator);
  if (s.code() == StatusCode::kDeadlineExceeded) {
    std::cerr << "bitfleet-train: " << s.message() << "\n";
    (*communicator)->abort_group(3);
  }
  if (!s.is_ok()) return fail(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bitfleet::common::Flags flags(argc, argv, {"json", "resume"});
  const auto& pos = flags.positionals();
  const std::string command = pos.empty() ? "" : pos[0];
  if (command == "run") return run(flags, &argc, &argv);
  if (command == "describe") return describe(flags);
  if (command == "random-backbone") return random_backbone(flags);
  std::cerr << kUsage;
  return 2;
}
