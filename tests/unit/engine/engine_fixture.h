// Shared fixture for engine tests: a random tiny backbone written to a temporary directory.
#pragma once

#include <gtest/gtest.h>
#include <ftw.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <memory>
#include <string>

#include <ATen/Parallel.h>

#include "worker/engine/backbone.h"
#include "worker/local/random_backbone.h"

namespace bitfleet::engine::testing {

// A temporary directory, removed with everything in it. POSIX calls rather than std::filesystem:
// the torch wheel's libtorch.so exports its own copy of std::filesystem::remove_all, which some
// machines' dynamic linkers bind and which crashes (seen on the GPU machines, 2026-11-23).
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : std::string("/tmp")) +
                          "/bitfleet-engine-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    ::nftw(path_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
           FTW_DEPTH | FTW_PHYS);
  }
  std::string path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::unique_ptr<Backbone> random_backbone(const TempDir& dir, Architecture arch = Architecture::kBert,
                                                 uint64_t seed = 1) {
  at::set_num_threads(1);
  const local::RandomBackboneSpec spec{.architecture = arch, .layers = 2, .hidden = 32, .heads = 4, .intermediate = 37,
                                      .vocab_size = 300, .max_sequence_length = 64, .seed = seed};
  const std::string out = dir.sub(arch == Architecture::kBert ? "bert" : "roberta");
  Status written = local::write_random_backbone(spec, out);
  EXPECT_TRUE(written.is_ok()) << written.to_string();
  auto loaded = Backbone::load(out, c10::kCPU, at::kFloat);
  EXPECT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  return loaded.is_ok() ? std::move(loaded).value() : nullptr;
}

}  // namespace bitfleet::engine::testing
