// The API's JSON views of stored records: the job, file, event, worker-group and sweep objects that
// docs/openapi.json describes. Times are unix seconds.
#pragma once

#include <nlohmann/json.hpp>

#include "coordinator/store.h"

namespace bitfleet::coordinator {

nlohmann::json job_json(const JobRecord& job);
// Why a queued job cannot start: a sentence when no live group (`live`: the groups not lost) can
// run it — none serves its backbone, or none of those has what it needs (GroupFit) — else null
// (it waits for a free slot in its turn). GET /v1/jobs sets it as the job's "waiting_reason".
nlohmann::json waiting_reason(const JobRecord& job, const std::vector<WorkerRecord>& live);
nlohmann::json file_json(const FileRecord& file);
nlohmann::json event_json(const EventRecord& event);
// `lost_after_ms`: a group silent this long is "lost".
nlohmann::json worker_json(const WorkerRecord& worker, int64_t now, int64_t lost_after_ms);
// The sweep object: its spec, status (from its variants'), each variant's grid point, status and
// best, and the best succeeded variant by the objective.
nlohmann::json sweep_json(const SweepRecord& sweep, const std::vector<JobRecord>& variants);
// A sweep's status from its variants': cancelled by request; running while any variant runs (or
// some wait and some succeeded); queued while all wait; then succeeded if one did, else failed.
std::string sweep_status(bool cancelled, int64_t queued, int64_t running, int64_t succeeded);
// The succeeded variant with the best objective value (ties: the earliest); null when none.
const JobRecord* best_variant(const SweepRecord& sweep, const std::vector<JobRecord>& variants);

}  // namespace bitfleet::coordinator
