#include "worker/engine/session.h"

#include <cstdlib>

#include <ATen/Parallel.h>

#include "common/log.h"
#include "worker/engine/block_attention.h"

namespace bitfleet::engine {
namespace {

// The GPU of this rank on its node: mpirun's or srun's local rank, else 0.
c10::Device cuda_device_of_this_rank() {
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (local == nullptr) local = std::getenv("SLURM_LOCALID");
  return c10::Device(c10::kCUDA, local ? static_cast<c10::DeviceIndex>(std::atoi(local)) : 0);
}

}  // namespace

Result<std::unique_ptr<Session>> Session::open(const SessionOptions& options, comm::Communicator& comm) {
  if (options.device != "cpu" && options.device != "cuda") {
    return invalid_argument("device must be cpu or cuda, got \"" + options.device + "\"", "device");
  }
  std::unique_ptr<Session> s(new Session());
  s->options_ = options;
  const bool cuda = options.device == "cuda";
  if (cuda) s->device_ = cuda_device_of_this_rank();
  if (options.threads > 0) at::set_num_threads(options.threads);
  const common::CpuIsa& isa = common::detect_cpu_isa();
  BITFLEET_ASSIGN_OR_RETURN(common::Dtype dtype, common::choose_dtype(options.dtype, cuda, isa));
  CpuAttentionKernel attention = CpuAttentionKernel::kAuto;
  if (options.cpu_attention == "block") {
    if (!block_attention_available()) return invalid_argument("cpu_attention block needs AVX-512F", "cpu_attention");
    attention = CpuAttentionKernel::kBlock;
  } else if (options.cpu_attention == "flash") {
    attention = CpuAttentionKernel::kFlash;
  } else if (options.cpu_attention != "auto") {
    return invalid_argument("cpu_attention must be auto, block or flash, got \"" + options.cpu_attention + "\"",
                            "cpu_attention");
  }
  if (comm.size() > 1) {  // one group, one dtype: where auto would differ by CPU, rank 0's choice
    std::string chosen(common::dtype_name(dtype));
    BITFLEET_RETURN_IF_ERROR(comm.broadcast(chosen));
    dtype = common::parse_dtype(chosen).value_or(dtype);
  }
  BITFLEET_LOG(kInfo) << "dtype " << common::dtype_name(dtype) << " (--dtype " << options.dtype << ") on "
                      << options.device << "; CPU " << isa.summary() << "; " << at::get_num_threads() << " threads";
  BITFLEET_ASSIGN_OR_RETURN(s->backbone_, Backbone::load(options.backbone_dir, s->device_, scalar_type(dtype)));
  BITFLEET_ASSIGN_OR_RETURN(s->tokenizer_, text::Tokenizer::load(options.backbone_dir));
  s->model_ = std::make_unique<BitFitModel>(
      *s->backbone_, ModelOptions{.slots = options.slots,
                                  .max_labels = options.max_labels,
                                  .cpu_attention = attention,
                                  .head_rows_only = options.head_rows_only});
  TrainerOptions trainer_options;
  trainer_options.max_rows_per_pass =
      options.rows_per_pass >= 0 ? options.rows_per_pass : TrainerOptions::default_rows_per_pass(cuda);
  s->trainer_ = std::make_unique<Trainer>(*s->model_, comm, s->tokenizer_->pad_id(), trainer_options);
  return s;
}

}  // namespace bitfleet::engine
