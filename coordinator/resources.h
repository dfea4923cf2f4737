// The API's JSON views of stored records: the job, file, event and worker-group objects that
// docs/openapi.json describes. Times are unix seconds.
#pragma once

#include <nlohmann/json.hpp>

#include "coordinator/store.h"

namespace bitfleet::coordinator {

nlohmann::json job_json(const JobRecord& job);
nlohmann::json file_json(const FileRecord& file);
nlohmann::json event_json(const EventRecord& event);
// `lost_after_ms`: a group silent this long is "lost".
nlohmann::json worker_json(const WorkerRecord& worker, int64_t now, int64_t lost_after_ms);

}  // namespace bitfleet::coordinator
