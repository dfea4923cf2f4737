// FileCache: a worker's local copies of job files, by content. A file is downloaded once per
// machine (ranks on one host share the directory), verified against its sha256, and moved into
// place atomically, so concurrent downloads of the same file by several ranks are harmless.
// Thread-safety: any thread; distinct HttpClients per thread.
#pragma once

#include <string>

#include "common/net/http_client.h"
#include "common/status.h"

namespace bitfleet::agent {

class FileCache {
 public:
  explicit FileCache(std::string dir) : dir_(std::move(dir)) {}
  Status init();
  // The local path of the content with this sha256, downloading `target` first when absent.
  Result<std::string> fetch(net::HttpClient& client, const std::string& target, const std::string& sha256);

 private:
  std::string dir_;
};

}  // namespace bitfleet::agent
