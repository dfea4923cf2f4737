#include "worker/comm/mpi_communicator.h"

#include "worker/comm/mpi_world.h"

namespace bitfleet::comm {
namespace {

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(std::unique_ptr<MpiWorld> world) : world_(std::move(world)) {}
  int rank() const override { return world_->rank(); }
  int size() const override { return world_->size(); }
  std::string_view backend() const override { return "mpi"; }
  Status all_reduce_sum(float* data, size_t count, void*) override { return world_->all_reduce_sum(data, count); }
  Status broadcast(std::string& bytes) override { return world_->broadcast(bytes); }
  [[noreturn]] void abort_group(int code) override { world_->abort(code); }

 private:
  std::unique_ptr<MpiWorld> world_;
};

}  // namespace

Result<std::unique_ptr<Communicator>> make_mpi_communicator(int* argc, char*** argv, std::chrono::milliseconds timeout) {
  BITFLEET_ASSIGN_OR_RETURN(std::unique_ptr<MpiWorld> world, MpiWorld::init(argc, argv, timeout));
  return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(std::move(world)));
}

}  // namespace bitfleet::comm
