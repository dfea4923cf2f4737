// Uploader: the coordinator's file id for a local dataset, sending each distinct content once.
//
// A file is known by its SHA-256 and format (the extension decides how the coordinator reads it).
// Before sending, the Uploader asks the coordinator for a file with that digest
// (GET /v1/files?sha256=) and reuses it, so a manifest that names one file in 200 rows, or that
// is submitted again after a partial failure, uploads it once.
// Thread-safety: one Uploader per thread (it holds the Api).
#pragma once

#include <map>
#include <string>

#include "cli/api.h"
#include "common/status.h"

namespace bitfleet::cli {

class Uploader {
 public:
  explicit Uploader(Api& api) : api_(api) {}

  Result<std::string> file_id(const std::string& path);

  int uploaded() const { return uploaded_; }
  int reused() const { return reused_; }  // distinct files the coordinator already had

 private:
  Api& api_;
  std::map<std::string, std::string> by_path_;     // local path -> file id
  std::map<std::string, std::string> by_content_;  // sha256 + format -> file id
  int uploaded_ = 0, reused_ = 0;
};

}  // namespace bitfleet::cli
