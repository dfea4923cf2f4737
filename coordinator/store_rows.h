// Rows of the store's tables as records: the column lists and the readers, shared by store.cpp and
// store_scheduling.cpp (internal to the store).
#pragma once

#include <algorithm>
#include <tuple>

#include "common/json_fields.h"
#include "coordinator/sqlite.h"
#include "coordinator/store.h"

namespace bitfleet::coordinator {

inline constexpr const char* kFileColumns =
    "id, tenant, filename, format, bytes, sha256, rows, columns, created_at";

// A JSON column as the store wrote it; anything else is data loss, never an exception.
inline Result<nlohmann::json> json_column(const Statement& s, int column, const std::string& what) {
  auto parsed = common::parse_json(s.text(column), what);
  if (!parsed.is_ok()) return data_loss("the store holds unreadable JSON: " + parsed.status().message());
  return parsed;
}

inline Result<FileRecord> file_from_row(const Statement& s) {
  FileRecord f;
  f.id = s.text(0);
  f.tenant = s.text(1);
  f.filename = s.text(2);
  f.format = s.text(3);
  f.bytes = s.integer(4);
  f.sha256 = s.text(5);
  f.rows = s.integer(6);
  BITFLEET_ASSIGN_OR_RETURN(nlohmann::json columns, json_column(s, 7, "file " + f.id + "'s columns"));
  if (!columns.is_array() || !std::all_of(columns.begin(), columns.end(), [](const auto& c) { return c.is_string(); })) {
    return data_loss("file " + f.id + "'s stored columns are not a list of names");
  }
  f.columns = columns.get<std::vector<std::string>>();
  f.created_at = s.integer(8);
  return f;
}

inline constexpr const char* kJobColumns =
    "seq, id, tenant, backbone, status, request, attempt, expiries, created_at, queued_at, started_at, "
    "finished_at, total_steps, worker_id, error, step, train_loss, metrics, checkpoint_blob, checkpoint_step, "
    "artifact_blob, artifact_bytes, artifact_sha256, evaluations, best, outcome, sweep_id";

inline Result<JobRecord> job_from_row(const Statement& s) {
  JobRecord j;
  j.seq = s.integer(0);
  j.id = s.text(1);
  j.tenant = s.text(2);
  j.backbone = s.text(3);
  j.status = s.text(4);
  BITFLEET_ASSIGN_OR_RETURN(nlohmann::json stored, json_column(s, 5, "job " + j.id + "'s request"));
  auto request = common::parse_job_request(stored, common::FileRefs::kFileIds);
  if (!request.is_ok()) return data_loss("job " + j.id + " holds an unreadable request: " + request.status().message());
  j.request = std::move(request).value();
  j.attempt = s.integer(6);
  j.expiries = s.integer(7);
  j.created_at = s.integer(8);
  j.queued_at = s.integer(9);
  j.started_at = s.optional_integer(10);
  j.finished_at = s.optional_integer(11);
  j.total_steps = s.optional_integer(12);
  j.worker_id = s.text(13);
  j.error = s.text(14);
  j.step = s.integer(15);
  if (!s.is_null(16)) j.train_loss = s.real(16);
  if (!s.is_null(17)) {
    BITFLEET_ASSIGN_OR_RETURN(j.metrics, json_column(s, 17, "job " + j.id + "'s metrics"));
  }
  j.checkpoint_blob = s.text(18);
  j.checkpoint_step = s.integer(19);
  j.artifact_blob = s.text(20);
  j.artifact_bytes = s.integer(21);
  j.artifact_sha256 = s.text(22);
  BITFLEET_ASSIGN_OR_RETURN(j.evaluations, json_column(s, 23, "job " + j.id + "'s evaluations"));
  for (auto [column, out, what] : {std::tuple{24, &j.best, "best"}, std::tuple{25, &j.outcome, "outcome"}}) {
    if (!s.is_null(column)) {
      BITFLEET_ASSIGN_OR_RETURN(*out, json_column(s, column, "job " + j.id + "'s " + what));
    }
  }
  j.sweep_id = s.text(26);
  return j;
}

inline constexpr const char* kSweepColumns = "seq, id, tenant, spec, cancelled, rungs, created_at";

inline Result<SweepRecord> sweep_from_row(const Statement& s) {
  SweepRecord w;
  w.seq = s.integer(0);
  w.id = s.text(1);
  w.tenant = s.text(2);
  BITFLEET_ASSIGN_OR_RETURN(w.spec, json_column(s, 3, "sweep " + w.id + "'s spec"));
  w.cancelled = s.integer(4) != 0;
  BITFLEET_ASSIGN_OR_RETURN(w.rungs, json_column(s, 5, "sweep " + w.id + "'s rungs"));
  w.created_at = s.integer(6);
  return w;
}

}  // namespace bitfleet::coordinator
