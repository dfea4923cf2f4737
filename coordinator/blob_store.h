// BlobStore: the coordinator's large objects (uploaded datasets, checkpoints, artifacts) as files
// under DATA_DIR/blobs, addressed by generated ids only — never by a name a user gave.
//
// A blob becomes visible only whole: bytes are written to DATA_DIR/tmp, fsynced, renamed into
// blobs/, and the directory fsynced. Temporary files left by a crash are removed at start.
// Thread-safety: all methods may be called concurrently (distinct ids, atomic renames).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bitfleet::coordinator {

class BlobStore {
 public:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  Status init();

  // A fresh path in tmp/ for a streamed upload; adopt() or discard() it afterwards.
  std::string temp_path() const;
  // fsyncs a complete temporary file and moves it in as blob `id`.
  Status adopt(const std::string& temp_path, const std::string& id) const;
  void discard(const std::string& temp_path) const;
  Status put(const std::string& id, std::string_view bytes) const;
  Status remove(const std::string& id) const;
  std::string path(const std::string& id) const;
  // Removes every blob whose id is not in `referenced` (call at start, before serving); returns
  // how many it removed.
  Result<int64_t> remove_unreferenced(const std::vector<std::string>& referenced) const;

 private:
  std::string root_;
};

// A new random id: prefix + 24 lower-case hex digits (96 bits).
std::string new_id(std::string_view prefix);

}  // namespace bitfleet::coordinator
