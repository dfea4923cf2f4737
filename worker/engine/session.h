// Session: one worker process's engine, assembled once from one options struct — the device
// (CUDA: the local rank's GPU), LibTorch's CPU threads, the frozen backbone, its tokenizer, the
// BitFit model with its slots, and the trainer over the group's communicator. The worker group
// (worker/group_runner.cpp), `bitfleet-train run` (worker/local/) and the step benchmark all
// open one; what they do with its slots is theirs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "common/precision.h"
#include "common/status.h"
#include "worker/comm/communicator.h"
#include "worker/engine/backbone.h"
#include "worker/engine/bitfit_model.h"
#include "worker/engine/session_options.h"
#include "worker/engine/trainer.h"
#include "worker/text/tokenizer.h"

namespace bitfleet::engine {

class Session {
 public:
  // Loads the backbone and tokenizer from options.backbone_dir; errors name what failed.
  static Result<std::unique_ptr<Session>> open(const SessionOptions& options, comm::Communicator& comm);

  const SessionOptions& options() const { return options_; }
  c10::Device device() const { return device_; }
  common::Dtype dtype() const { return backbone_->precision(); }  // what --dtype chose
  const Backbone& backbone() const { return *backbone_; }
  const std::shared_ptr<const text::Tokenizer>& tokenizer() const { return tokenizer_; }
  BitFitModel& model() { return *model_; }
  Trainer& trainer() { return *trainer_; }

 private:
  Session() = default;

  SessionOptions options_;
  c10::Device device_{c10::kCPU};
  std::unique_ptr<Backbone> backbone_;
  std::shared_ptr<const text::Tokenizer> tokenizer_;
  std::unique_ptr<BitFitModel> model_;
  std::unique_ptr<Trainer> trainer_;
};

}  // namespace bitfleet::engine
