// Test tool for tests/parity/test_engine.py: one forward and backward of bitfleet's engine on
// given inputs, with outputs named so Python can compare them with transformers.
//
//   engine_probe --backbone DIR --inputs IN.safetensors --spec SPEC.json --out OUT.safetensors
//                [--heads HEADS.safetensors] [--slots S] [--dtype float32|bfloat16] [--device cpu|cuda]
//
// IN:    input_ids, attention_mask, token_type_ids [N, T] I64; labels_cls [N] I64,
//        labels_reg [N] F32 or labels_tok [N, T] I64 as the segments need.
// SPEC:  {"segments": [{"slot": 2, "task": "classification", "num_outputs": 3,
//          "examples": [0, 1, 2], "loss_scale": 0.333, "seed": 7}]}
// HEADS: "slot{S}/{hf name}" tensors imported into slots (e.g. the head transformers drew).
// OUT:   "logits/{i}" per segment (real tokens only for token tasks: [n, T_i, L]), "loss/{i}",
//        "grad/slot{S}/{hf name}" and "param/slot{S}/{hf name}".
#include <iostream>
#include <map>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/flags.h"
#include "common/safetensors.h"
#include "worker/engine/backbone.h"
#include "worker/engine/batch_builder.h"
#include "worker/engine/bitfit_model.h"

using namespace bitfleet;

namespace {

at::Tensor load(const safetensors::File& f, const std::string& name) {
  const auto* t = f.find(name);
  if (t == nullptr) return {};
  at::ScalarType dt = t->dtype == safetensors::DType::kI64 ? at::kLong : at::kFloat;
  return at::from_blob(const_cast<std::byte*>(t->data.data()), t->shape, at::TensorOptions().dtype(dt)).clone();
}

void add(safetensors::Writer& w, const std::string& name, at::Tensor t) {
  t = t.detach().to(at::kCPU).to(at::kFloat).contiguous();
  w.add(name, safetensors::DType::kF32, t.sizes().vec(),
        {reinterpret_cast<const std::byte*>(t.data_ptr<float>()), static_cast<size_t>(t.numel()) * 4});
}

int die(const std::string& message) {
  std::cerr << "engine_probe: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  common::Flags flags(argc, argv);
  std::string backbone_dir = flags.string("backbone"), inputs_path = flags.string("inputs");
  std::string spec_path = flags.string("spec"), out_path = flags.string("out");
  auto heads_path = flags.optional_string("heads");
  int64_t slots = flags.integer("slots", 1, 1024, 4);
  std::string dtype_name = flags.string("dtype", "float32"), device_name = flags.string("device", "cpu");
  if (Status s = flags.finish(); !s.is_ok()) return die(s.message());
  at::set_num_threads(1);

  c10::Device device(device_name == "cuda" ? c10::kCUDA : c10::kCPU);
  auto backbone = engine::Backbone::load(backbone_dir, device, dtype_name == "bfloat16" ? at::kBFloat16 : at::kFloat);
  if (!backbone.is_ok()) return die(backbone.status().to_string());
  engine::BitFitModel model(**backbone, {.slots = slots});

  auto spec_text = common::read_file(spec_path);
  if (!spec_text.is_ok()) return die(spec_text.status().to_string());
  auto spec = nlohmann::json::parse(*spec_text);
  auto inputs = safetensors::File::open(inputs_path);
  if (!inputs.is_ok()) return die(inputs.status().to_string());
  at::Tensor ids = load(*inputs, "input_ids"), mask = load(*inputs, "attention_mask"), types = load(*inputs, "token_type_ids");
  at::Tensor labels_cls = load(*inputs, "labels_cls"), labels_reg = load(*inputs, "labels_reg"), labels_tok = load(*inputs, "labels_tok");

  std::map<int, std::vector<std::pair<std::string, at::Tensor>>> heads;
  std::optional<safetensors::File> heads_file;
  if (heads_path) {
    auto f = safetensors::File::open(*heads_path);
    if (!f.is_ok()) return die(f.status().to_string());
    heads_file = std::move(f).value();
    for (const auto& t : heads_file->tensors()) {
      auto slash = t.name.find('/');
      int slot = std::stoi(t.name.substr(4, slash - 4));
      heads[slot].emplace_back(t.name.substr(slash + 1), load(*heads_file, t.name));
    }
  }

  // Strip padding and keep the per-example vectors alive for the ExampleRefs.
  const int64_t n = ids.size(0);
  std::vector<std::vector<int32_t>> ex_ids(n), ex_tok(n);
  std::vector<std::vector<uint8_t>> ex_types(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t len = mask[i].sum().item<int64_t>();
    for (int64_t t = 0; t < len; ++t) {
      ex_ids[i].push_back(static_cast<int32_t>(ids[i][t].item<int64_t>()));
      ex_types[i].push_back(static_cast<uint8_t>(types[i][t].item<int64_t>()));
      if (labels_tok.defined()) ex_tok[i].push_back(static_cast<int32_t>(labels_tok[i][t].item<int64_t>()));
    }
  }
  std::vector<engine::SegmentInput> segments;
  for (const auto& s : spec["segments"]) {
    engine::SegmentInput in;
    in.slot = s["slot"];
    in.task = *common::parse_task_type(s["task"].get<std::string>());
    in.num_outputs = s["num_outputs"];
    in.loss_scale = s["loss_scale"];
    if (Status ok = model.supports(in.task); !ok.is_ok()) return die(ok.to_string());
    model.reset_slot(in.slot, in.task, in.num_outputs, s.value("seed", 0));
    if (heads.count(in.slot)) {
      auto copied = model.import_slot(model.params(), in.slot, in.task, in.num_outputs, heads[in.slot]);
      if (!copied.is_ok()) return die(copied.status().to_string());
    }
    for (int64_t i : s["examples"].get<std::vector<int64_t>>()) {
      engine::ExampleRef e;
      e.ids = ex_ids[i];
      e.type_ids = ex_types[i];
      if (labels_cls.defined()) e.label = labels_cls[i].item<int64_t>();
      if (labels_reg.defined()) e.target = labels_reg[i].item<float>();
      if (labels_tok.defined()) e.token_labels = ex_tok[i];
      in.examples.push_back(e);
    }
    segments.push_back(std::move(in));
  }
  engine::BatchBuilder builder((*backbone)->config(), device, static_cast<int32_t>((*backbone)->config().pad_token_id));
  engine::Batch batch = builder.build(segments);
  engine::ForwardOutput out = model.forward(batch);
  model.backward(out);

  safetensors::Writer w;
  for (size_t i = 0; i < out.logits.size(); ++i) {
    add(w, "logits/" + std::to_string(i), out.logits[i]);
    add(w, "loss/" + std::to_string(i), out.losses[i]);
  }
  for (const auto& in : segments) {
    for (auto& [name, t] : model.export_slot(model.grads(), in.slot, in.task, in.num_outputs, common::all_bias_kinds())) {
      add(w, "grad/slot" + std::to_string(in.slot) + "/" + name, t);
    }
    for (auto& [name, t] : model.export_slot(model.params(), in.slot, in.task, in.num_outputs, common::all_bias_kinds())) {
      add(w, "param/slot" + std::to_string(in.slot) + "/" + name, t);
    }
  }
  if (Status s = w.write_file(out_path); !s.is_ok()) return die(s.to_string());
  return 0;
}
