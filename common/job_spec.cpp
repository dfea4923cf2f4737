#include "common/job_spec.h"

#include <algorithm>
#include <array>

#include "common/json_fields.h"

namespace bitfleet::common {
namespace {

constexpr std::array<std::string_view, kNumBiasKinds> kBiasKindNames = {
    "query",  "key",    "value",           "attention_output",     "attention_layernorm",
    "intermediate", "output", "output_layernorm", "embeddings_layernorm", "pooler"};

constexpr size_t kMaxMetadataBytes = 16 * 1024;
constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;  // exact in every JSON peer

std::string all_kind_names() {
  std::string out;
  for (auto n : kBiasKindNames) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

BiasKindSet parse_bias_terms(JsonFields& f) {
  const nlohmann::json& v = f.raw("bias_terms");
  if (v.is_null()) return all_bias_kinds();
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "all") return all_bias_kinds();
    if (s == "query+intermediate") return query_intermediate_bias_kinds();
    f.fail("bias_terms", "must be \"all\", \"query+intermediate\" or a list of bias kinds (" +
                             all_kind_names() + "), got \"" + s + "\"");
    return {};
  }
  if (!v.is_array() || v.empty()) {
    f.fail("bias_terms", "must be \"all\", \"query+intermediate\" or a non-empty list of bias kinds");
    return {};
  }
  BiasKindSet kinds;
  for (size_t i = 0; i < v.size(); ++i) {
    std::string at = "bias_terms[" + std::to_string(i) + "]";
    auto kind = v[i].is_string() ? parse_bias_kind(v[i].get_ref<const std::string&>()) : std::nullopt;
    if (!kind) {
      f.fail(at, "must be one of " + all_kind_names() + ", got " + v[i].dump());
      return {};
    }
    if (kinds.test(static_cast<int>(*kind))) {
      f.fail(at, "duplicates " + v[i].dump() + "; bias kinds must be unique");
      return {};
    }
    kinds.set(static_cast<int>(*kind));
  }
  return kinds;
}

Hyperparameters parse_hyperparameters(const nlohmann::json& v, const std::string& path, Status& error) {
  Hyperparameters h;
  if (v.is_null()) return h;
  JsonFields f(v, path);
  h.epochs = static_cast<int>(f.integer("epochs", 1, 100, h.epochs));
  h.batch_size = static_cast<int>(f.integer("batch_size", 1, 1024, h.batch_size));
  h.learning_rate = f.number("learning_rate", {.min = 0, .min_exclusive = true, .max = 1}, h.learning_rate);
  h.warmup_ratio = f.number("warmup_ratio", {.min = 0, .max = 1, .max_exclusive = true}, h.warmup_ratio);
  h.weight_decay = f.number("weight_decay", {.min = 0, .max = 1}, h.weight_decay);
  h.max_seq_len = static_cast<int>(f.integer("max_seq_len", 8, kMaxSeqLenLimit, h.max_seq_len));
  h.seed = static_cast<uint64_t>(f.integer("seed", 0, kMaxSafeInteger, static_cast<int64_t>(h.seed)));
  h.bias_terms = parse_bias_terms(f);
  h.max_grad_norm = f.number("max_grad_norm", {.min = 0, .max = 1e6}, h.max_grad_norm);
  h.max_steps = f.integer("max_steps", 0, 1'000'000'000, h.max_steps);
  h.eval_every_steps = f.integer("eval_every_steps", 0, 1'000'000'000, h.eval_every_steps);
  h.metric_for_best = f.string("metric_for_best", "", 64, true);  // "": the task's default
  h.early_stopping_patience = static_cast<int>(f.integer("early_stopping_patience", 0, 1000, 0));
  const std::string dtype = f.string("dtype", "any", 16);
  if (f.ok() && dtype != "any") {
    h.dtype = parse_dtype(dtype);
    if (!h.dtype) f.fail("dtype", "must be one of any, fp32, bf16, got \"" + dtype + "\"");
  }
  error = f.finish();
  return h;
}

TaskSpec parse_task(const nlohmann::json& v, const std::string& path, Status& error) {
  TaskSpec t;
  JsonFields f(v, path);
  std::string type = f.string("type");
  if (f.ok()) {
    auto parsed = parse_task_type(type);
    if (!parsed) {
      f.fail("type", "must be one of classification, regression, token_classification, got \"" +
                         type + "\"");
    } else {
      t.type = *parsed;
    }
  }
  size_t max_text_fields = t.type == TaskType::kTokenClassification ? 1 : 2;
  t.text_fields = f.string_list("text_fields", 1, max_text_fields, 256, true);
  t.label_field = f.string("label_field", std::nullopt, 256);
  if (t.type == TaskType::kRegression) {
    if (f.has("labels") && !(f.raw("labels").is_array() && f.raw("labels").empty())) {
      f.fail("labels", "must be absent for a regression task (it has one numeric target)");
    }
    f.raw("labels");
  } else {
    t.labels = f.string_list("labels", 2, kMaxLabels, 256, true);
  }
  for (const auto& name : t.text_fields) {
    if (f.ok() && name == t.label_field) {
      f.fail("label_field", "names \"" + name + "\", which is also a text field");
    }
  }
  error = f.finish();
  return t;
}

}  // namespace

std::string_view task_type_name(TaskType type) {
  switch (type) {
    case TaskType::kClassification: return "classification";
    case TaskType::kRegression: return "regression";
    case TaskType::kTokenClassification: return "token_classification";
  }
  return "classification";
}

std::optional<TaskType> parse_task_type(std::string_view name) {
  if (name == "classification") return TaskType::kClassification;
  if (name == "regression") return TaskType::kRegression;
  if (name == "token_classification") return TaskType::kTokenClassification;
  return std::nullopt;
}

std::string_view bias_kind_name(BiasKind kind) { return kBiasKindNames[static_cast<size_t>(kind)]; }

std::optional<BiasKind> parse_bias_kind(std::string_view name) {
  for (size_t i = 0; i < kBiasKindNames.size(); ++i) {
    if (kBiasKindNames[i] == name) return static_cast<BiasKind>(i);
  }
  return std::nullopt;
}

BiasKindSet all_bias_kinds() { return BiasKindSet().set(); }

BiasKindSet query_intermediate_bias_kinds() {
  BiasKindSet s;
  s.set(static_cast<int>(BiasKind::kQuery));
  s.set(static_cast<int>(BiasKind::kIntermediate));
  return s;
}

std::string bias_terms_name(BiasKindSet kinds) {
  if (kinds == all_bias_kinds()) return "all";
  if (kinds == query_intermediate_bias_kinds()) return "query+intermediate";
  std::string out;
  for (int i = 0; i < kNumBiasKinds; ++i) {
    if (kinds.test(i)) out += (out.empty() ? "" : ",") + std::string(kBiasKindNames[i]);
  }
  return out;
}

const std::vector<std::string>& task_metric_names(TaskType type) {
  static const std::vector<std::string> classification = {"accuracy", "f1", "mcc"};
  static const std::vector<std::string> regression = {"pearson", "spearman", "mse"};
  static const std::vector<std::string> token = {"accuracy"};
  switch (type) {
    case TaskType::kClassification:
      return classification;
    case TaskType::kRegression:
      return regression;
    case TaskType::kTokenClassification:
      return token;
  }
  return token;
}

std::string default_metric_for_best(TaskType type) {
  return type == TaskType::kRegression ? "pearson" : "accuracy";
}

bool metric_minimised(std::string_view metric) { return metric == "mse"; }

namespace {

// The evaluation hyperparameters against the task and the files: metric_for_best defaults to
// the task's and must be one it reports; early stopping needs something to evaluate on.
void check_evaluation(JobRequest& r, JsonFields& f) {
  Hyperparameters& h = r.hyperparameters;
  const std::string field = "hyperparameters.metric_for_best";
  if (h.metric_for_best.empty()) h.metric_for_best = default_metric_for_best(r.task.type);
  const auto& names = task_metric_names(r.task.type);
  if (std::find(names.begin(), names.end(), h.metric_for_best) == names.end()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    f.fail(field, "must be a metric " + std::string(task_type_name(r.task.type)) + " reports (" + known + "), got \"" +
                      h.metric_for_best + "\"");
  } else if (h.early_stopping_patience > 0 && r.validation_file.empty()) {
    f.fail("hyperparameters.early_stopping_patience", "needs a validation_file to evaluate on");
  }
}

}  // namespace

bool is_plain_name(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool is_resource_id(std::string_view id, std::string_view prefix) {
  if (id.size() != prefix.size() + 24 || id.substr(0, prefix.size()) != prefix) return false;
  for (char c : id.substr(prefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<JobRequest> parse_job_request(const nlohmann::json& body, FileRefs refs,
                                     const std::string& path) {
  JobRequest r;
  JsonFields f(body, path);
  r.backbone = f.string("backbone", std::nullopt, 128);
  if (f.ok() && !is_plain_name(r.backbone)) {
    f.fail("backbone", "must be 1 to 128 characters of letters, digits, '.', '_' or '-'");
  }
  auto file_ref = [&](std::string_view key, bool required) {
    std::string v = f.string(key, required ? std::nullopt : std::optional<std::string>(""), 4096);
    if (f.ok() && !v.empty() && refs == FileRefs::kFileIds && !is_file_id(v)) {
      f.fail(key, "must be a file id (\"file-\" and 24 hex digits, from POST /v1/files), got \"" +
                      v.substr(0, 64) + "\"");
    }
    return v;
  };
  r.train_file = file_ref("train_file", true);
  r.validation_file = file_ref("validation_file", false);
  r.test_file = file_ref("test_file", false);

  Status nested;
  const nlohmann::json& task = f.raw("task");
  if (f.ok() && task.is_null()) f.fail("task", "is required");
  if (f.ok()) {
    r.task = parse_task(task, f.path_of("task"), nested);
    BITFLEET_RETURN_IF_ERROR(nested);
  }
  const nlohmann::json& hyper = f.raw("hyperparameters");
  if (f.ok()) {
    r.hyperparameters = parse_hyperparameters(hyper, f.path_of("hyperparameters"), nested);
    BITFLEET_RETURN_IF_ERROR(nested);
  }
  if (f.ok()) check_evaluation(r, f);
  r.priority = static_cast<int>(f.integer("priority", -1000, 1000, 0));
  const nlohmann::json& metadata = f.raw("metadata");
  if (!metadata.is_null()) {
    if (!metadata.is_object()) {
      f.fail("metadata", "must be an object, got " + json_type_name(metadata));
    } else if (metadata.dump().size() > kMaxMetadataBytes) {
      f.fail("metadata", "must be at most " + std::to_string(kMaxMetadataBytes) + " bytes as JSON");
    } else {
      r.metadata = metadata;
    }
  }
  BITFLEET_RETURN_IF_ERROR(f.finish());
  return r;
}

nlohmann::json to_json(const TaskSpec& t) {
  nlohmann::json j = {{"type", task_type_name(t.type)},
                      {"text_fields", t.text_fields},
                      {"label_field", t.label_field}};
  if (t.type != TaskType::kRegression) j["labels"] = t.labels;
  return j;
}

nlohmann::json to_json(const Hyperparameters& h) {
  nlohmann::json bias;
  std::string name = bias_terms_name(h.bias_terms);
  if (name == "all" || name == "query+intermediate") {
    bias = name;
  } else {
    bias = nlohmann::json::array();
    for (int i = 0; i < kNumBiasKinds; ++i) {
      if (h.bias_terms.test(i)) bias.push_back(kBiasKindNames[i]);
    }
  }
  return {{"epochs", h.epochs},
          {"batch_size", h.batch_size},
          {"learning_rate", h.learning_rate},
          {"warmup_ratio", h.warmup_ratio},
          {"weight_decay", h.weight_decay},
          {"max_seq_len", h.max_seq_len},
          {"seed", h.seed},
          {"bias_terms", bias},
          {"max_grad_norm", h.max_grad_norm},
          {"max_steps", h.max_steps},
          {"eval_every_steps", h.eval_every_steps},
          {"metric_for_best", h.metric_for_best},
          {"early_stopping_patience", h.early_stopping_patience},
          {"dtype", h.dtype ? std::string(dtype_name(*h.dtype)) : std::string("any")}};
}

nlohmann::json to_json(const JobRequest& r) {
  nlohmann::json j = {{"backbone", r.backbone},
                      {"train_file", r.train_file},
                      {"task", to_json(r.task)},
                      {"hyperparameters", to_json(r.hyperparameters)},
                      {"priority", r.priority},
                      {"metadata", r.metadata}};
  j["validation_file"] = r.validation_file.empty() ? nlohmann::json() : nlohmann::json(r.validation_file);
  j["test_file"] = r.test_file.empty() ? nlohmann::json() : nlohmann::json(r.test_file);
  return j;
}

}  // namespace bitfleet::common
