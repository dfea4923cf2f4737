#include "serve/artifact.h"

#include <cstring>

#include <nlohmann/json.hpp>

#include "common/json_fields.h"
#include "common/net/sha256.h"
#include "common/safetensors.h"

namespace bitfleet::serve {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
  return "[" + s + "]";
}

// The task and hyperparameters of the metadata, through the job request parser (canonical form).
Result<common::JobRequest> request_of(const std::map<std::string, std::string>& meta, const std::string& where) {
  auto task = meta.find("task");
  if (task == meta.end()) return data_loss(where + " has no \"task\" metadata: not a bitfleet artifact");
  nlohmann::json request = {{"backbone", "x"}, {"train_file", "x"}};
  auto parsed = common::parse_json(task->second, where + ": task");
  if (!parsed.is_ok()) return data_loss(parsed.status().message());
  request["task"] = *parsed;
  if (auto h = meta.find("hyperparameters"); h != meta.end()) {
    auto hyper = common::parse_json(h->second, where + ": hyperparameters");
    if (!hyper.is_ok()) return data_loss(hyper.status().message());
    request["hyperparameters"] = *hyper;
  }
  auto r = common::parse_job_request(request, common::FileRefs::kLocalPaths);
  if (!r.is_ok()) return data_loss(where + ": its task metadata is not valid: " + r.status().message());
  return r;
}

}  // namespace

Result<LoadedTask> read_artifact(std::string bytes, const std::string& name, const BackboneIdentity& backbone) {
  const std::string where = "the artifact of " + name;
  const std::string sha256 = net::sha256_hex(bytes);
  BITFLEET_ASSIGN_OR_RETURN(auto file, safetensors::File::from_bytes(std::move(bytes), where));
  const auto& meta = file.metadata();
  BITFLEET_ASSIGN_OR_RETURN(common::JobRequest request, request_of(meta, where));
  const engine::SlotLayout& layout = *backbone.layout;
  if (auto it = meta.find("backbone_sha256"); it != meta.end() && !backbone.sha256.empty() &&
                                               !it->second.empty() && it->second != backbone.sha256) {
    return Status(StatusCode::kFailedPrecondition,
                  where + " was trained on the backbone with sha256 " + it->second.substr(0, 12) +
                      "…, but this server holds " + backbone.sha256.substr(0, 12) + "…");
  }
  const auto& task = request.task;
  const int64_t outputs = task.num_outputs();
  if (outputs > layout.max_labels()) {
    return Status(StatusCode::kFailedPrecondition, where + " has " + std::to_string(outputs) +
                                                       " labels; this server holds heads of at most " +
                                                       std::to_string(layout.max_labels()) + " (--max-labels)");
  }
  if (task.type != common::TaskType::kTokenClassification && !backbone.sequence_tasks) {
    return Status(StatusCode::kFailedPrecondition,
                  where + " is a sequence task, and this server's backbone has no pooler for its head");
  }
  LoadedTask out;
  out.row = *backbone.pristine_row;
  bool head = false;
  for (const auto& t : file.tensors()) {
    const engine::RowSegment* match = nullptr;
    for (const auto& seg : layout.segments()) {
      if (seg.head_part && !layout.task_uses(task.type, *seg.head_part)) continue;
      if (layout.hf_name(seg, task.type) == t.name) match = &seg;
    }
    if (match == nullptr) {
      return Status(StatusCode::kFailedPrecondition,
                    where + " holds \"" + t.name + "\", which is not a bias or head of this server's backbone");
    }
    const auto want = layout.task_shape(*match, outputs);
    if (t.dtype != safetensors::DType::kF32 || t.shape != want) {
      return Status(StatusCode::kFailedPrecondition, where + ": \"" + t.name + "\" is " +
                                                         std::string(safetensors::dtype_name(t.dtype)) + " " +
                                                         shape_text(t.shape) + ", this backbone's is F32 " +
                                                         shape_text(want) + ": made for another backbone");
    }
    std::memcpy(out.row.data() + match->offset, t.data.data(), t.data.size());
    head = head || match->head_part == engine::HeadPart::kClassifierWeight;
  }
  if (!head) return data_loss(where + " has no task head (classifier weights)");
  auto info = std::make_shared<TaskInfo>();
  info->name = name;
  if (auto it = meta.find("job_id"); it != meta.end()) info->job_id = it->second;
  info->task = task;
  info->max_seq_len = request.hyperparameters.max_seq_len;
  info->artifact_sha256 = sha256;
  out.info = std::move(info);
  return out;
}

}  // namespace bitfleet::serve
