// Mixing: examples of four different tasks (different heads, label counts and losses) computed in
// one batch give each example the logits, and each slot the gradients, of four separate passes.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include <ATen/ATen.h>

#include "tests/unit/engine/engine_fixture.h"
#include "worker/engine/batch_builder.h"
#include "worker/engine/bitfit_model.h"

namespace bitfleet::engine {
namespace {

using common::BiasKind;
using common::TaskType;

struct TaskData {
  int slot;
  TaskType task;
  int64_t outputs;
  std::vector<std::vector<int32_t>> ids, token_labels;
  std::vector<std::vector<uint8_t>> types;
  std::vector<int64_t> labels;
  std::vector<float> targets;
};

TaskData make_task(int slot, TaskType task, int64_t outputs, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  TaskData d{slot, task, outputs};
  for (int i = 0; i < n; ++i) {
    int len = 3 + static_cast<int>(rng() % 18);
    std::vector<int32_t> ids(len), tok(len, -100);
    std::vector<uint8_t> types(len, 0);
    for (int t = 0; t < len; ++t) {
      ids[t] = 5 + static_cast<int32_t>(rng() % 290);
      types[t] = t > len / 2;
      if (t > 0 && t + 1 < len) tok[t] = static_cast<int32_t>(rng() % outputs);
    }
    d.ids.push_back(ids);
    d.types.push_back(types);
    d.token_labels.push_back(tok);
    d.labels.push_back(static_cast<int64_t>(rng() % outputs));
    d.targets.push_back(static_cast<float>(rng() % 1000) / 200.0f);
  }
  return d;
}

SegmentInput segment(const TaskData& d) {
  SegmentInput s;
  s.slot = d.slot;
  s.task = d.task;
  s.num_outputs = d.outputs;
  int64_t labelled = 0;
  for (size_t i = 0; i < d.ids.size(); ++i) {
    ExampleRef e;
    e.ids = d.ids[i];
    e.type_ids = d.types[i];
    e.label = d.labels[i];
    e.target = d.targets[i];
    e.token_labels = d.token_labels[i];
    for (int32_t l : d.token_labels[i]) labelled += l != -100;
    s.examples.push_back(e);
  }
  s.loss_scale = d.task == TaskType::kTokenClassification ? 1.0 / labelled : 1.0 / d.ids.size();
  return s;
}

class MixingTest : public ::testing::TestWithParam<Architecture> {
 protected:
  void SetUp() override {
    backbone_ = testing::random_backbone(dir_, GetParam());
    ASSERT_NE(backbone_, nullptr);
    model_ = std::make_unique<BitFitModel>(*backbone_, ModelOptions{.slots = 4, .max_labels = 8});
    tasks_ = {make_task(0, TaskType::kClassification, 2, 5, 1), make_task(1, TaskType::kClassification, 5, 3, 2),
              make_task(2, TaskType::kRegression, 1, 4, 3), make_task(3, TaskType::kTokenClassification, 3, 6, 4)};
    for (const auto& t : tasks_) model_->reset_slot(t.slot, t.task, t.outputs, 100 + t.slot);
  }

  // Runs forward and backward on the given tasks from zero gradients (in model_, or in `model`);
  // returns logits per task.
  std::vector<at::Tensor> step(const std::vector<const TaskData*>& tasks, BitFitModel* model = nullptr) {
    if (model == nullptr) model = model_.get();
    model->grads().zero_();
    std::vector<SegmentInput> inputs;
    for (const auto* t : tasks) inputs.push_back(segment(*t));
    BatchBuilder builder(backbone_->config(), c10::kCPU, static_cast<int32_t>(backbone_->config().pad_token_id));
    Batch batch = builder.build(inputs);
    ForwardOutput out = model->forward(batch);
    model->backward(out);
    std::vector<at::Tensor> logits;
    for (auto& l : out.logits) logits.push_back(l.detach().clone());
    return logits;
  }

  std::vector<const TaskData*> all_tasks() const {
    std::vector<const TaskData*> all;
    for (const auto& t : tasks_) all.push_back(&t);
    return all;
  }

  testing::TempDir dir_;
  std::unique_ptr<Backbone> backbone_;
  std::unique_ptr<BitFitModel> model_;
  std::vector<TaskData> tasks_;
};

TEST_P(MixingTest, OneBatchEqualsSeparatePassesPerSlot) {
  const std::vector<const TaskData*> all = all_tasks();
  std::vector<at::Tensor> mixed_logits = step(all);
  at::Tensor mixed_grads = model_->grads().clone();
  for (size_t i = 0; i < tasks_.size(); ++i) {
    std::vector<at::Tensor> alone = step({&tasks_[i]});
    const int slot = tasks_[i].slot;
    EXPECT_LE((alone[0] - mixed_logits[i]).abs().max().item<float>(), 1e-5f) << "logits of slot " << slot;
    at::Tensor want = model_->grads()[slot];
    const float scale = std::max(want.abs().max().item<float>(), 1e-12f);
    EXPECT_LE((mixed_grads[slot] - want).abs().max().item<float>() / scale, 1e-5f) << "gradients of slot " << slot;
    EXPECT_GT(want.abs().sum().item<float>(), 0.0f);
    // A pass over one slot leaves every other slot's gradients at zero.
    for (int other = 0; other < 4; ++other) {
      if (other != slot) {
        EXPECT_EQ(model_->grads()[other].abs().sum().item<float>(), 0.0f);
      }
    }
  }
}

// Bit for bit on CPU: a slot's numbers do not depend on which slots share its batch. This is what
// lets a job move to another worker group mid-run and finish exactly as it would have.
TEST_P(MixingTest, SlotResultsDoNotDependOnBatchCompanionsBitForBit) {
  const std::vector<const TaskData*> all = all_tasks();
  std::vector<at::Tensor> mixed_logits = step(all);
  at::Tensor mixed_grads = model_->grads().clone();
  for (size_t i = 0; i < tasks_.size(); ++i) {
    std::vector<at::Tensor> alone = step({&tasks_[i]});
    EXPECT_TRUE(at::equal(alone[0], mixed_logits[i])) << "logits of slot " << tasks_[i].slot;
    EXPECT_TRUE(at::equal(model_->grads()[tasks_[i].slot], mixed_grads[tasks_[i].slot]))
        << "gradients of slot " << tasks_[i].slot;
  }
}

// The last layer past its keys and values runs for the head rows only (each sequence example's
// first row, a token task's every row): the logits and every slot's gradients are those of the
// last layer computed for every row, to fp32 rounding, in a pass of all four tasks and in each
// task's own pass — so the rows left out reach no head, and the rows kept are the right ones.
TEST_P(MixingTest, LastLayerForHeadRowsOnlyGivesTheFullLayersResults) {
  BitFitModel full(*backbone_, ModelOptions{.slots = 4, .max_labels = 8, .head_rows_only = false});
  for (const auto& t : tasks_) full.reset_slot(t.slot, t.task, t.outputs, 100 + t.slot);
  std::vector<std::vector<const TaskData*>> passes = {all_tasks()};
  for (const auto& t : tasks_) passes.push_back({&t});
  for (const auto& pass : passes) {
    const std::vector<at::Tensor> cut_logits = step(pass), full_logits = step(pass, &full);
    for (size_t i = 0; i < pass.size(); ++i) {
      const float scale = full_logits[i].abs().max().item<float>();
      EXPECT_LE((cut_logits[i] - full_logits[i]).abs().max().item<float>(), 1e-5f * scale) << "slot " << pass[i]->slot;
    }
    for (const auto* t : pass) {
      const at::Tensor want = full.grads()[t->slot], got = model_->grads()[t->slot];
      const float scale = want.abs().max().item<float>();
      ASSERT_GT(scale, 0.0f);
      EXPECT_LE((got - want).abs().max().item<float>(), 1e-5f * scale) << "gradients of slot " << t->slot;
      // The last layer's own biases learn: the value bias (through the kept queries' attention)
      // and the intermediate one (the kept rows only).
      const int last = backbone_->config().layers - 1;
      for (const auto& seg : model_->layout().segments()) {
        if (seg.layer != last || (seg.bias_kind != BiasKind::kValue && seg.bias_kind != BiasKind::kIntermediate)) continue;
        EXPECT_GT(got.narrow(0, seg.offset, seg.numel()).abs().max().item<float>(), 0.0f)
            << model_->layout().hf_name(seg, t->task);
      }
    }
  }
}

TEST_P(MixingTest, FrozenWeightsNeverRequireOrReceiveGradients) {
  const std::vector<const TaskData*> all = all_tasks();
  step(all);
  std::vector<at::Tensor> frozen = {backbone_->word_embeddings, backbone_->position_embeddings,
                                    backbone_->token_type_embeddings, backbone_->embeddings_ln_w};
  for (const auto& l : backbone_->layers) {
    for (const at::Tensor* t : {&l.qkv_w, &l.query_w, &l.key_w, &l.value_w, &l.attn_out_w, &l.attn_ln_w, &l.inter_w,
                                &l.out_w, &l.out_ln_w, &l.query_b, &l.out_ln_b}) {
      frozen.push_back(*t);
    }
  }
  for (const auto& t : frozen) {
    EXPECT_FALSE(t.requires_grad());
    EXPECT_FALSE(t.grad().defined());
  }
}

// bf16 on the CPU, a pass of one segment: each bias vector of the slot comes out of one cast of the
// slot's bias region (SlotBiases in bitfit_model.cpp) and its gradient goes back to its own offset.
// Each pass alone leaves every other slot's row at zero, and every bias vector's gradient and the
// logits follow the fp32 model's on the same weights within bf16's rounding; a vector's gradient in
// the wrong place, or in the wrong slot, would be off by its whole size.
TEST_P(MixingTest, Bf16OneSegmentPassGivesItsSlotTheFp32Gradients) {
  const std::string dir = dir_.sub(GetParam() == Architecture::kBert ? "bert" : "roberta");
  auto bf16_backbone = Backbone::load(dir, c10::kCPU, at::kBFloat16);
  ASSERT_TRUE(bf16_backbone.is_ok()) << bf16_backbone.status().to_string();
  BitFitModel bf16(**bf16_backbone, ModelOptions{.slots = 4, .max_labels = 8});
  for (const auto& t : tasks_) bf16.reset_slot(t.slot, t.task, t.outputs, 100 + t.slot);
  BatchBuilder builder(backbone_->config(), c10::kCPU, static_cast<int32_t>(backbone_->config().pad_token_id));
  for (const auto& task : tasks_) {
    const std::vector<at::Tensor> want_logits = step({&task});
    const at::Tensor want = model_->grads()[task.slot];
    bf16.grads().zero_();
    const Batch batch = builder.build({segment(task)});
    ForwardOutput out = bf16.forward(batch);
    bf16.backward(out);
    const at::Tensor logits = out.logits[0].detach().to(at::kFloat);
    const float logit_scale = want_logits[0].abs().max().item<float>();
    EXPECT_LE((logits - want_logits[0]).abs().max().item<float>(), 0.05f * logit_scale) << "slot " << task.slot;
    for (int other = 0; other < 4; ++other) {
      if (other != task.slot) {
        EXPECT_EQ(bf16.grads()[other].abs().sum().item<float>(), 0.0f) << "slot " << other;
      }
    }
    const at::Tensor got = bf16.grads()[task.slot];
    const float slot_scale = want.abs().max().item<float>();
    int checked = 0;
    for (const auto& seg : bf16.layout().segments()) {
      if (!seg.bias_kind) continue;
      const at::Tensor w = want.narrow(0, seg.offset, seg.numel()), g = got.narrow(0, seg.offset, seg.numel());
      const float scale = w.abs().max().item<float>();
      if (scale == 0.0f) {  // unused by this task (the pooler of a token task)
        EXPECT_EQ(g.abs().max().item<float>(), 0.0f) << bf16.layout().hf_name(seg, task.task);
        continue;
      }
      // The key bias's gradient is zero in exact arithmetic (softmax ignores a shift of a query's
      // scores): both are rounding noise, bounded against the slot's largest gradient instead.
      EXPECT_LE((g - w).abs().max().item<float>(), 0.1f * std::max(scale, 1e-4f * slot_scale))
          << bf16.layout().hf_name(seg, task.task);
      ++checked;
    }
    EXPECT_GT(checked, 10) << "slot " << task.slot;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, MixingTest, ::testing::Values(Architecture::kBert, Architecture::kRoberta),
                         [](const auto& info) { return info.param == Architecture::kBert ? "Bert" : "Roberta"; });

}  // namespace
}  // namespace bitfleet::engine
