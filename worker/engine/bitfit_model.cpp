#include "worker/engine/bitfit_model.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "worker/engine/batch_builder.h"
#include "worker/engine/cpu_gelu.h"
#include "worker/engine/cpu_layer_norm.h"

namespace bitfleet::engine {

using common::BiasKind;
using common::TaskType;

namespace {

int table_layer(BiasKind kind, int layer) { return is_per_layer(kind) ? layer : 0; }

// t cut into pieces of `sizes` rows by one split, whose backward is one concatenation (a narrow per
// piece would make a zero-filled full-size gradient per piece). One piece is t itself: a split's
// backward would still copy the whole gradient (on the CPU a pass holds one segment: q, k and v of
// every layer).
std::vector<at::Tensor> pieces(const at::Tensor& t, const std::vector<int64_t>& sizes) {
  if (sizes.size() == 1) return {t};
  return t.split_with_sizes(sizes);
}

// Autograd warns once that our .grad views "do not obey the gradient layout contract": they are
// strided views into the flat buffer by design, and the contract only concerns a fast path for
// grads autograd allocates itself. Drop that warning; pass every other one on.
class GradLayoutWarningFilter : public c10::WarningHandler {
 public:
  explicit GradLayoutWarningFilter(c10::WarningHandler* next) : next_(next) {}
  void process(const c10::Warning& warning) override {
    if (warning.msg().find("gradient layout contract") != std::string::npos) return;
    next_->process(warning);
  }

 private:
  c10::WarningHandler* next_;
};

void install_warning_filter() {
  static GradLayoutWarningFilter filter(c10::WarningUtils::get_warning_handler());
  static std::once_flag once;
  std::call_once(once, [] { c10::WarningUtils::set_warning_handler(&filter); });
}

// One slot's bias vectors in the compute dtype, for a pass of one segment (bf16 on the CPU): `row`
// is the slot's bias region of params() (the bias segments lead the row), cast once; each output
// is one segment of it. Backward writes the defined gradients into one fp32 region gradient, which
// the row's leaf accumulates in one add. Per bias vector, that replaces a select, a cast, and in
// backward a cast, a SelectBackward that zero-fills a whole [S, width] table and an accumulation
// of it — about 250 small ops of a MiniLM pass (docs/performance.md). The values are the same: a
// bias vector's gradient is cast to fp32 exactly, and added where the table's leaf added it.
class SlotBiases : public torch::autograd::Function<SlotBiases> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& row,
                                                const std::vector<int64_t>& offsets,
                                                const std::vector<int64_t>& widths, at::ScalarType dtype) {
    const at::Tensor cast = row.to(dtype);
    torch::autograd::variable_list out;
    out.reserve(offsets.size());
    for (size_t i = 0; i < offsets.size(); ++i) out.push_back(cast.narrow(0, offsets[i], widths[i]));
    ctx->saved_data["offsets"] = offsets;
    ctx->saved_data["widths"] = widths;
    ctx->saved_data["size"] = row.size(0);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto offsets = ctx->saved_data["offsets"].toIntVector();
    const auto widths = ctx->saved_data["widths"].toIntVector();
    at::Tensor region = at::zeros({ctx->saved_data["size"].toInt()}, at::kFloat);
    float* dst = region.mutable_data_ptr<float>();
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) continue;  // a bias this pass did not use
      const at::Tensor g = grads[i].to(at::kFloat).contiguous();
      const float* src = g.const_data_ptr<float>();
      for (int64_t j = 0; j < widths[i]; ++j) dst[offsets[i] + j] = src[j];
    }
    return {region, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

BitFitModel::BitFitModel(const Backbone& backbone, ModelOptions options)
    : backbone_(backbone),
      options_(options),
      layout_(backbone.config(), options.table_kinds, options.max_labels),
      compute_dtype_(backbone.dtype()),
      onehot_bias_(backbone.device().is_cuda()),
      // bf16 on the CPU: attention by cpu_bf16_attention() (our block kernel on AVX-512, else bf16
      // flash forward and fp32 flash backward; why, measured, in cpu_attention.h), GELU by
      // cpu_bf16_gelu() (cpu_gelu.h), q, k and v by one GEMM (project()), residual +
      // LayerNorm + β by cpu_bf16_add_layer_norm() (cpu_layer_norm.h), and a one-segment pass
      // broadcasts its slot's bias row (row_slots()).
      cpu_bf16_(!backbone.device().is_cuda() && backbone.dtype() == at::kBFloat16) {
  install_warning_filter();
  const int64_t S = options_.slots, row = layout_.row_size();
  auto fp32 = at::TensorOptions().dtype(at::kFloat).device(backbone.device());
  params_ = at::zeros({S, row}, fp32);
  grads_ = at::zeros({S, row}, fp32);

  // Leaves are views into params_, and their .grad views into grads_: AccumulateGrad adds into an
  // existing .grad in place, so backward writes straight into the flat buffer.
  auto leaf = [&](int64_t offset, at::IntArrayRef shape, at::IntArrayRef strides) {
    at::Tensor t = params_.as_strided(shape, strides, offset).detach().requires_grad_(true);
    t.mutable_grad() = grads_.as_strided(shape, strides, offset);
    return t;
  };
  const auto& config = backbone.config();
  tables_.assign(common::kNumBiasKinds, std::vector<at::Tensor>(config.layers));
  for (const auto& seg : layout_.segments()) {
    if (!seg.bias_kind) continue;
    tables_[static_cast<int>(*seg.bias_kind)][table_layer(*seg.bias_kind, seg.layer)] =
        leaf(seg.offset, {S, seg.numel()}, {row, 1});
  }
  if (cpu_bf16_) {  // each slot's bias region, for SlotBiases
    table_outputs_.assign(common::kNumBiasKinds, std::vector<int>(config.layers, -1));
    int64_t end = 0;
    for (const auto& seg : layout_.segments()) {
      if (!seg.bias_kind) continue;
      table_outputs_[static_cast<int>(*seg.bias_kind)][table_layer(*seg.bias_kind, seg.layer)] =
          static_cast<int>(bias_offsets_.size());
      bias_offsets_.push_back(seg.offset);
      bias_widths_.push_back(seg.numel());
      end = std::max(end, seg.offset + seg.numel());
    }
    for (int64_t s = 0; s < S && end > 0; ++s) slot_biases_.push_back(leaf(s * row, {end}, {1}));
  }
  heads_.assign(S, std::vector<at::Tensor>(4));
  for (int64_t s = 0; s < S; ++s) {
    for (const auto& seg : layout_.segments()) {
      if (!seg.head_part) continue;
      std::vector<int64_t> strides(seg.shape.size(), 1);
      for (int i = static_cast<int>(seg.shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * seg.shape[i + 1];
      heads_[s][static_cast<int>(*seg.head_part)] = leaf(s * row + seg.offset, seg.shape, strides);
    }
  }
}

const at::Tensor& BitFitModel::head_leaf(int slot, HeadPart part) const {
  return heads_[slot][static_cast<int>(part)];
}

void BitFitModel::reset_slot(int slot, TaskType task, int64_t num_outputs, uint64_t seed) {
  at::NoGradGuard no_grad;
  at::Tensor row = params_[slot];
  row.zero_();
  for (const auto& seg : layout_.segments()) {
    if (seg.bias_kind) {
      row.narrow(0, seg.offset, seg.numel()).copy_(backbone_.pretrained_bias(*seg.bias_kind, seg.layer));
    }
  }
  const int64_t H = backbone_.config().hidden;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto draw = [&](int64_t rows) { return at::empty({rows, H}, at::kFloat).normal_(0.0, 0.02, gen); };
  if (layout_.task_uses(task, HeadPart::kDenseWeight)) {
    const auto* dense = layout_.head(HeadPart::kDenseWeight);
    row.narrow(0, dense->offset, H * H).copy_(draw(H).view(-1));
  }
  const auto* cls = layout_.head(HeadPart::kClassifierWeight);
  row.narrow(0, cls->offset, num_outputs * H).copy_(draw(num_outputs).view(-1));
}

std::vector<std::pair<std::string, at::Tensor>> BitFitModel::export_slot(const at::Tensor& buffer, int slot,
                                                                         TaskType task, int64_t num_outputs,
                                                                         common::BiasKindSet kinds) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  at::Tensor row = buffer[slot].to(at::kCPU);
  for (const auto& seg : layout_.segments()) {
    if (seg.bias_kind && (!kinds.test(static_cast<int>(*seg.bias_kind)) || !layout_.task_uses(task, *seg.bias_kind))) {
      continue;
    }
    if (seg.head_part && !layout_.task_uses(task, *seg.head_part)) continue;
    auto shape = layout_.task_shape(seg, num_outputs);
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    out.emplace_back(layout_.hf_name(seg, task), row.narrow(0, seg.offset, numel).view(shape).clone());
  }
  return out;
}

Result<int> BitFitModel::import_slot(at::Tensor buffer, int slot, TaskType task, int64_t num_outputs,
                                     const std::vector<std::pair<std::string, at::Tensor>>& tensors) const {
  at::NoGradGuard no_grad;
  at::Tensor row = buffer[slot];
  int copied = 0;
  for (const auto& [name, value] : tensors) {
    for (const auto& seg : layout_.segments()) {
      if (layout_.hf_name(seg, task) != name) continue;
      if (seg.head_part && !layout_.task_uses(task, *seg.head_part)) continue;
      auto shape = layout_.task_shape(seg, num_outputs);
      if (value.sizes() != at::IntArrayRef(shape)) {
        std::string got, want;
        for (auto d : value.sizes()) got += (got.empty() ? "" : ", ") + std::to_string(d);
        for (auto d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
        return invalid_argument("tensor \"" + name + "\" has shape [" + got + "], expected [" + want + "]");
      }
      row.narrow(0, seg.offset, value.numel()).copy_(value.reshape(-1));
      ++copied;
    }
  }
  return copied;
}

Status BitFitModel::supports(TaskType task) const {
  if (backbone_.config().architecture == Architecture::kBert && task != TaskType::kTokenClassification &&
      !backbone_.has_pooler()) {
    return invalid_argument("the backbone checkpoint has no pooler (pooler.dense.*), which BERT's " +
                            std::string(common::task_type_name(task)) + " head needs");
  }
  return Status::ok();
}

BitFitModel::RowSlots BitFitModel::row_slots(const Batch& batch) const {
  const at::Tensor& index = batch.row_slots;
  RowSlots r{index, {}};
  // bf16 on the CPU, one segment in the pass: its slot's row, broadcast (padding rows, to a multiple
  // of 16, then take it too: they reach no output). Not in fp32, whose bias gradients then sum in
  // embedding backward's order in every pass, alone or packed (tests/unit/engine/mixing_test.cpp).
  if (cpu_bf16_ && batch.segments.size() == 1) {
    r.single = batch.segments[0].slot;
    if (!slot_biases_.empty()) {
      r.single_biases = SlotBiases::apply(slot_biases_[r.single], bias_offsets_, bias_widths_, compute_dtype_);
    }
  }
  if (onehot_bias_) {
    r.onehot = at::zeros({index.size(0), options_.slots}, index.options().dtype(compute_dtype_))
                   .scatter_(1, index.unsqueeze(1), 1.0);
  }
  return r;
}

BitFitModel::RowSlots BitFitModel::RowSlots::select(const at::Tensor& which) const {
  return {index.index_select(0, which), onehot.defined() ? onehot.index_select(0, which) : at::Tensor(), single,
          single_biases};
}

BitFitModel::RowSlots BitFitModel::RowSlots::narrow(int64_t begin, int64_t n) const {
  return {index.narrow(0, begin, n), onehot.defined() ? onehot.narrow(0, begin, n) : at::Tensor(), single,
          single_biases};
}

const at::Tensor& BitFitModel::table(BiasKind kind, int layer) const {
  return tables_[static_cast<int>(kind)][table_layer(kind, layer)];
}

// The CPU path's bias of a table, in the compute dtype: the pass's one slot row [width] (SlotBiases;
// cast before it is broadcast: in bf16 its gradient, the sum over rows, is then rounded once, as
// autocast's is), or per row an embedding lookup (fast on the strided table view, and its backward
// adds each row's gradient into its slot's row in row order).
at::Tensor BitFitModel::gathered(BiasKind kind, int layer, const RowSlots& slots) const {
  if (!slots.single_biases.empty()) {
    return slots.single_biases[table_outputs_[static_cast<int>(kind)][table_layer(kind, layer)]];
  }
  const at::Tensor& t = table(kind, layer);
  at::Tensor rows = slots.single >= 0 ? t.select(0, slots.single) : at::embedding(t, slots.index);
  return rows.scalar_type() == compute_dtype_ ? rows : rows.to(compute_dtype_);
}

// GPU: a rank-S GEMM; CPU: the gathered rows.
at::Tensor BitFitModel::add_table_rows(at::Tensor x, BiasKind kind, int layer, const RowSlots& slots) const {
  if (onehot_bias_) return x.addmm_(slots.onehot, table(kind, layer).to(compute_dtype_));
  return x.add_(gathered(kind, layer, slots));
}

// y = x · Wᵀ + B[slot of row]. On the CPU the gathered bias is the GEMM's accumulator (addmm,
// beta = 1), as nn.Linear folds its bias: no separate pass over [rows, out].
at::Tensor BitFitModel::linear(const at::Tensor& x, const at::Tensor& w, BiasKind kind, int layer,
                               const at::Tensor& shared_bias, const RowSlots& slots) const {
  const at::Tensor& t = table(kind, layer);
  if (!t.defined()) return at::linear(x, w, shared_bias);
  if (onehot_bias_) return add_table_rows(at::mm(x, w.t()), kind, layer, slots);
  return at::addmm(gathered(kind, layer, slots), x, w.t());
}

// count consecutive ones of a layer's q, k and v, from the first'th (0 = q), for the rows of x.
// bf16 on the CPU: one GEMM on the stacked weight's rows, its bias theirs side by side (each the
// slot's row or the shared one). Its backward is then one GEMM that sums the input gradients in
// fp32, rounded once, where three GEMMs and two bf16 adds took 1.5x as long (MiniLM, 1024 rows:
// 3.0 against 2.1 ms, AMD EPYC Zen 4). Elsewhere a GEMM each, whose fp32 bits the mixing and
// parity tests pin.
std::vector<at::Tensor> BitFitModel::project(const at::Tensor& x, int layer, const RowSlots& slots, int first,
                                             int count) const {
  const EncoderLayerWeights& L = backbone_.layers[layer];
  const std::array<BiasKind, 3> kinds = {BiasKind::kQuery, BiasKind::kKey, BiasKind::kValue};
  const std::array<const at::Tensor*, 3> weights = {&L.query_w, &L.key_w, &L.value_w};
  const std::array<const at::Tensor*, 3> shared = {&L.query_b, &L.key_b, &L.value_b};
  std::vector<at::Tensor> out;
  if (!cpu_bf16_) {
    for (int i = first; i < first + count; ++i) out.push_back(linear(x, *weights[i], kinds[i], layer, *shared[i], slots));
    return out;
  }
  std::vector<at::Tensor> biases;
  bool per_row = false;
  for (int i = first; i < first + count; ++i) {
    const at::Tensor& t = table(kinds[i], layer);
    biases.push_back(t.defined() ? gathered(kinds[i], layer, slots) : *shared[i]);
    per_row = per_row || biases.back().dim() == 2;
  }
  if (per_row) {  // a pass of several segments: each row its slot's bias
    for (auto& b : biases) b = b.expand({x.size(0), b.size(-1)});
  }
  const int64_t hidden = backbone_.config().hidden;
  const at::Tensor w = L.qkv_w.narrow(0, first * hidden, count * hidden);
  const at::Tensor y = at::addmm(count == 1 ? biases[0] : at::cat(biases, -1), x, w.t());
  return count == 1 ? std::vector<at::Tensor>{y} : y.split(hidden, 1);
}

at::Tensor BitFitModel::add_layer_norm(const at::Tensor& a, const at::Tensor& x, const at::Tensor& gamma,
                                       BiasKind kind, int layer, const at::Tensor& shared_beta,
                                       const RowSlots& slots) const {
  const double eps = backbone_.config().layer_norm_eps;
  const at::Tensor& t = table(kind, layer);
  // bf16 on the CPU with one β row for the pass: the residual add, LayerNorm and β in one kernel.
  if (cpu_bf16_ && (!t.defined() || slots.single >= 0) && layer_norm_kernel_available(x.size(-1))) {
    return cpu_bf16_add_layer_norm(a, x, gamma, t.defined() ? gathered(kind, layer, slots) : shared_beta, eps);
  }
  const at::Tensor sum = a.defined() ? a + x : x;
  if (!t.defined()) return at::layer_norm(sum, {x.size(-1)}, gamma, shared_beta, eps);
  // In place: layer norm's backward needs its input and statistics, not its output.
  return add_table_rows(at::layer_norm(sum, {x.size(-1)}, gamma, {}, eps), kind, layer, slots);
}

// Self-attention: each example attends within its own segment's padding. q holds every row's
// query, or with head_rows only the batch's head rows' (the last layer); k and v every row's. On
// the CPU one call per segment, so that a slot's bits never depend on its neighbours (in bf16,
// cpu_attention.h); on a GPU one fused call per run of consecutive segments of equal length (the
// usual case when examples are grouped by length), with no mask at all where a run has no
// padding, which lets SDPA take its flash kernel.
at::Tensor BitFitModel::attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Batch& batch,
                                  bool head_rows) const {
  const auto& c = backbone_.config();
  const auto& segs = batch.segments;
  auto queries = [&](const BatchSegment& s) { return head_rows ? head_rows_per_example(s) : s.seq_len; };
  // Runs of segments [first, last) that share one call, and their row counts in k and v and in q;
  // q, k and v are cut into them by pieces().
  std::vector<std::pair<size_t, size_t>> runs;
  std::vector<int64_t> sizes, query_sizes;
  for (size_t first = 0; first < segs.size();) {
    size_t last = first + 1;
    while (onehot_bias_ && last < segs.size() && segs[last].seq_len == segs[first].seq_len &&
           queries(segs[last]) == queries(segs[first])) {
      ++last;
    }
    int64_t rows = 0, query_rows = 0;
    for (size_t i = first; i < last; ++i) {
      rows += segs[i].examples * segs[i].seq_len;
      query_rows += segs[i].examples * queries(segs[i]);
    }
    runs.emplace_back(first, last);
    sizes.push_back(rows);
    query_sizes.push_back(query_rows);
    first = last;
  }
  const int64_t query_used = head_rows ? batch.head_segment_rows : batch.segment_rows;
  if (batch.rows > batch.segment_rows) sizes.push_back(batch.rows - batch.segment_rows);
  if (q.size(0) > query_used) query_sizes.push_back(q.size(0) - query_used);
  const auto qs = pieces(q, query_sizes), ks = pieces(k, sizes), vs = pieces(v, sizes);

  std::vector<at::Tensor> outputs;
  outputs.reserve(query_sizes.size());
  for (size_t r = 0; r < runs.size(); ++r) {
    const auto [first, last] = runs[r];
    const int64_t seq_len = segs[first].seq_len, examples = sizes[r] / seq_len;
    bool padded = false;
    std::vector<at::Tensor> masks;
    for (size_t i = first; i < last; ++i) {
      padded = padded || segs[i].padded;
      masks.push_back(segs[i].attention_mask);
    }
    auto heads = [&](const at::Tensor& t, int64_t len) {
      return t.view({examples, len, c.heads, c.head_dim()}).transpose(1, 2);
    };
    const int64_t query_len = queries(segs[first]);
    std::optional<at::Tensor> mask;  // an undefined Tensor would not do: SDPA rejects it
    if (padded || !onehot_bias_) {
      mask = (masks.size() == 1 ? masks[0] : at::cat(masks, 0)).view({examples, 1, 1, seq_len});
    }
    const at::Tensor qh = heads(qs[r], query_len), kh = heads(ks[r], seq_len), vh = heads(vs[r], seq_len);
    at::Tensor out = cpu_bf16_ ? cpu_bf16_attention(qh, kh, vh, *mask, options_.cpu_attention)
                               : at::scaled_dot_product_attention(qh, kh, vh, mask);
    outputs.push_back(out.transpose(1, 2).reshape({query_sizes[r], c.hidden}));
  }
  if (q.size(0) > query_used) {  // padding rows attend to nothing
    outputs.push_back(at::zeros({q.size(0) - query_used, c.hidden}, q.options()));
  }
  return outputs.size() == 1 ? outputs[0] : at::cat(outputs, 0);
}

at::Tensor BitFitModel::head_logits(const BatchSegment& seg, const at::Tensor& hidden,
                                    const at::Tensor& pooled_rows) const {
  const at::Tensor& w = head_leaf(seg.slot, HeadPart::kClassifierWeight);
  const at::Tensor& b = head_leaf(seg.slot, HeadPart::kClassifierBias);
  at::Tensor wn = w.narrow(0, 0, seg.num_outputs), bn = b.narrow(0, 0, seg.num_outputs);
  if (seg.task == TaskType::kTokenClassification) {
    at::Tensor h = hidden.to(at::kFloat);
    return at::linear(h, wn, bn).view({seg.examples, seg.seq_len, seg.num_outputs});
  }
  at::Tensor h = pooled_rows.to(at::kFloat);
  if (backbone_.config().architecture == Architecture::kRoberta) {
    h = at::tanh(at::linear(h, head_leaf(seg.slot, HeadPart::kDenseWeight), head_leaf(seg.slot, HeadPart::kDenseBias)));
  }
  at::Tensor logits = at::linear(h, wn, bn);
  return seg.task == TaskType::kRegression ? logits.squeeze(-1) : logits;
}

// The last layer computes its queries, and all that follows its attention, for the head rows
// alone: no other row's output reaches a head. Exact — the other rows' outputs would get zero
// gradient — and for sequence tasks it leaves out all but the keys and values of the last layer
// (MiniLM, 6 layers: 14% of the step's GEMM work; measured in docs/performance.md). A batch of token tasks
// alone, whose head rows are all its rows, takes the same path: a segment's bits must not depend
// on whether a sequence task shares its pass (tests/unit/engine/mixing_test.cpp).
ForwardOutput BitFitModel::forward(const Batch& batch) {
  const RowSlots slots = row_slots(batch);
  const bool head_rows = options_.head_rows_only;
  const RowSlots head_slots = head_rows ? slots.select(batch.head_rows) : slots;
  return heads(batch, encode(batch, slots, head_slots, head_rows), head_slots, head_rows);
}

// The encoder: embeddings, then every layer, with each row's slot biases. Returns the last layer's
// output for the head rows (with head_rows; their slots are head_slots) or for every row.
at::Tensor BitFitModel::encode(const Batch& batch, const RowSlots& slots, const RowSlots& head_slots,
                               bool head_rows) const {
  const auto& c = backbone_.config();
  const Backbone& w = backbone_;
  // Embeddings, summed in Hugging Face's order: (word + token type) + position.
  at::Tensor x = w.word_embeddings.index_select(0, batch.input_ids) +
                 w.token_type_embeddings.index_select(0, batch.token_type_ids);
  x = x + w.position_embeddings.index_select(0, batch.position_ids);
  x = add_layer_norm({}, x, w.embeddings_ln_w, BiasKind::kEmbeddingsLayerNorm, -1, w.embeddings_ln_b, slots);

  for (int l = 0; l < c.layers; ++l) {
    const EncoderLayerWeights& L = w.layers[l];
    // The rows this layer computes past its keys and values: every row, or the head rows.
    const bool cut = head_rows && l == c.layers - 1;
    const RowSlots& rs = cut ? head_slots : slots;
    at::Tensor context;
    at::Tensor xq = x;
    if (cut) {
      xq = x.index_select(0, batch.head_rows);
      const std::vector<at::Tensor> kv = project(x, l, slots, 1, 2);
      context = attention(project(xq, l, rs, 0, 1)[0], kv[0], kv[1], batch, true);
    } else {
      const std::vector<at::Tensor> qkv = project(x, l, slots, 0, 3);
      context = attention(qkv[0], qkv[1], qkv[2], batch, false);
    }
    at::Tensor a = linear(context, L.attn_out_w, BiasKind::kAttentionOutput, l, L.attn_out_b, rs);
    x = add_layer_norm(a, xq, L.attn_ln_w, BiasKind::kAttentionLayerNorm, l, L.attn_ln_b, rs);
    at::Tensor h = linear(x, L.inter_w, BiasKind::kIntermediate, l, L.inter_b, rs);
    switch (c.activation) {
      case Activation::kGeluErf: h = cpu_bf16_ ? cpu_bf16_gelu(h) : at::gelu(h); break;
      case Activation::kGeluTanh: h = at::gelu(h, "tanh"); break;
      case Activation::kRelu: h = at::relu(h); break;
    }
    at::Tensor o = linear(h, L.out_w, BiasKind::kOutput, l, L.out_b, rs);
    x = add_layer_norm(o, x, L.out_ln_w, BiasKind::kOutputLayerNorm, l, L.out_ln_b, rs);
  }

  return x;
}

// A segment's summed loss (unscaled): cross-entropy or squared error.
at::Tensor BitFitModel::segment_loss(const BatchSegment& seg, const at::Tensor& logits) {
  at::Tensor loss;
  switch (seg.task) {
    case TaskType::kClassification:
      loss = at::cross_entropy_loss(logits, seg.labels, {}, at::Reduction::Sum);
      break;
    case TaskType::kRegression:
      loss = (logits - seg.labels).pow(2).sum();
      break;
    case TaskType::kTokenClassification:
      loss = at::cross_entropy_loss(logits.reshape({-1, seg.num_outputs}), seg.labels.reshape(-1), {},
                                    at::Reduction::Sum, -100);
      break;
  }
  return loss;
}

// The heads over the encoder's output x (the head rows, or every row when nothing was left out):
// per segment, its logits and (with labels) its loss.
ForwardOutput BitFitModel::heads(const Batch& batch, const at::Tensor& x, const RowSlots& slots,
                                 bool head_rows) const {
  const auto& c = backbone_.config();
  const Backbone& w = backbone_;
  // Sequence heads read each example's first token: BERT through its pooler, RoBERTa directly.
  // Per-segment pieces come from pieces(). On the CPU the pooler runs per segment, so that its row
  // count does not depend on the other segments; on a GPU, once.
  const bool bert = c.architecture == Architecture::kBert;
  std::vector<at::Tensor> pooled_pieces, row_pieces;
  std::vector<int64_t> first_sizes, row_sizes;
  bool token_task = false;
  for (const auto& seg : batch.segments) {
    if (seg.task != TaskType::kTokenClassification) first_sizes.push_back(seg.examples);
    token_task = token_task || seg.task == TaskType::kTokenClassification;
    row_sizes.push_back(seg.examples * (head_rows ? head_rows_per_example(seg) : seg.seq_len));
  }
  if (!first_sizes.empty()) {
    // first_rows are places in the head rows; where x has every row (the check of the head rows),
    // each example's first row comes from the segments themselves.
    at::Tensor first_index = batch.first_rows;
    if (!head_rows) {
      std::vector<int64_t> rows;
      for (const auto& seg : batch.segments) {
        if (seg.task == TaskType::kTokenClassification) continue;
        for (int64_t e = 0; e < seg.examples; ++e) rows.push_back(seg.row_begin + e * seg.seq_len);
      }
      first_index = upload(rows, x.device());
    }
    at::Tensor first = x.index_select(0, first_index);
    TORCH_CHECK(!bert || backbone_.has_pooler(), "sequence task on a backbone without pooler; check supports()");
    const RowSlots first_slots = slots.select(first_index);
    if (bert && onehot_bias_) first = at::tanh(linear(first, w.pooler_w, BiasKind::kPooler, -1, w.pooler_b, first_slots));
    pooled_pieces = pieces(first, first_sizes);
    if (bert && !onehot_bias_) {
      int64_t offset = 0;
      for (auto& piece : pooled_pieces) {
        const int64_t n = piece.size(0);
        piece = at::tanh(linear(piece, w.pooler_w, BiasKind::kPooler, -1, w.pooler_b, first_slots.narrow(offset, n)));
        offset += n;
      }
    }
  }
  if (token_task) {
    const int64_t used = head_rows ? batch.head_segment_rows : batch.segment_rows;
    if (x.size(0) > used) row_sizes.push_back(x.size(0) - used);
    row_pieces = pieces(x, row_sizes);
  }

  ForwardOutput out;
  size_t next_pooled = 0;
  for (size_t i = 0; i < batch.segments.size(); ++i) {
    const BatchSegment& seg = batch.segments[i];
    const bool tokens = seg.task == TaskType::kTokenClassification;
    at::Tensor pooled = tokens ? at::Tensor() : pooled_pieces[next_pooled++];
    at::Tensor logits = head_logits(seg, tokens ? row_pieces[i] : at::Tensor(), pooled);
    out.logits.push_back(logits);
    if (!seg.labels.defined()) continue;
    out.losses.push_back(segment_loss(seg, logits) * seg.loss_scale);
  }
  return out;
}

void BitFitModel::backward(const ForwardOutput& output) {
  if (output.losses.empty()) return;
  at::Tensor total = output.losses[0];
  for (size_t i = 1; i < output.losses.size(); ++i) total = total + output.losses[i];
  torch::autograd::backward({total});
}

}  // namespace bitfleet::engine
