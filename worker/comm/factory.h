// make_communicator: the one place that knows every communicator backend (communicator.h is the
// interface the backends implement; this file depends on them, never the other way round).
#pragma once

#include <memory>

#include "common/status.h"
#include "worker/comm/communicator.h"

namespace bitfleet::comm {

// Creates the communicator of options.backend; MPI is initialised here (once per process) when
// needed.
Result<std::unique_ptr<Communicator>> make_communicator(const CommunicatorOptions& options, int* argc, char*** argv);

}  // namespace bitfleet::comm
