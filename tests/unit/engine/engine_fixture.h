// Shared fixture for engine tests: a random tiny backbone written to a temporary directory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include <ATen/Parallel.h>

#include "worker/engine/backbone.h"
#include "worker/engine/random_backbone.h"

namespace bitfleet::engine::testing {

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("bitfleet-engine-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::unique_ptr<Backbone> random_backbone(const TempDir& dir, Architecture arch = Architecture::kBert,
                                                 uint64_t seed = 1) {
  at::set_num_threads(1);
  RandomBackboneSpec spec;
  spec.architecture = arch;
  spec.layers = 2;
  spec.hidden = 32;
  spec.heads = 4;
  spec.intermediate = 37;
  spec.vocab_size = 300;
  spec.max_sequence_length = 64;
  spec.seed = seed;
  const std::string out = dir.sub(arch == Architecture::kBert ? "bert" : "roberta");
  Status written = write_random_backbone(spec, out);
  EXPECT_TRUE(written.is_ok()) << written.to_string();
  auto loaded = Backbone::load(out, c10::kCPU, at::kFloat);
  EXPECT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  return loaded.is_ok() ? std::move(loaded).value() : nullptr;
}

}  // namespace bitfleet::engine::testing
