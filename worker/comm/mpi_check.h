// BITFLEET_MPI_CHECK: every MPI call goes through it; a failure returns a Status naming the file,
// line, call and MPI's own error string.
#pragma once

#include <mpi.h>

#include <string>

#include "common/status.h"

#define BITFLEET_MPI_CHECK(call)                                                                  \
  do {                                                                                            \
    int bitfleet_mpi_rc_ = (call);                                                                \
    if (bitfleet_mpi_rc_ != MPI_SUCCESS) {                                                        \
      char bitfleet_mpi_msg_[MPI_MAX_ERROR_STRING];                                               \
      int bitfleet_mpi_len_ = 0;                                                                  \
      MPI_Error_string(bitfleet_mpi_rc_, bitfleet_mpi_msg_, &bitfleet_mpi_len_);                  \
      return ::bitfleet::unavailable(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " \
                                     #call ": " + std::string(bitfleet_mpi_msg_, bitfleet_mpi_len_)); \
    }                                                                                             \
  } while (false)
