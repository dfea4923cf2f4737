// SessionOptions: what an engine session (session.h) is opened with. Its own header, without
// LibTorch, so that option structs and flag parsers can hold one cheaply.
#pragma once

#include <cstdint>
#include <string>

namespace bitfleet::engine {

struct SessionOptions {
  std::string backbone_dir;
  std::string device = "cpu";  // cpu | cuda
  std::string dtype = "auto";  // auto | fp32 | bf16 (common/precision.h)
  int threads = 0;             // LibTorch intra-op threads; 0: leave LibTorch's setting
  int64_t slots = 8;           // tasks trained at once
  int64_t max_labels = 64;     // the widest head a slot holds
  int64_t rows_per_pass = -1;  // -1: TrainerOptions::default_rows_per_pass
  // bf16 attention on the CPU: auto | block | flash (cpu_attention.h). Only benchmarks set it, to
  // run both kernels side by side; the programs always take auto.
  std::string cpu_attention = "auto";
  // The last layer for the head rows only (ModelOptions::head_rows_only). Only benchmarks clear it,
  // to measure what the cut saves.
  bool head_rows_only = true;
};

}  // namespace bitfleet::engine
