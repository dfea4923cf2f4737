#include "coordinator/blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "common/file_util.h"

namespace bitfleet::coordinator {

namespace fs = std::filesystem;

std::string new_id(std::string_view prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string id(prefix);
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) id.push_back(kHex[(a >> (60 - 4 * i)) & 15]);
  for (int i = 0; i < 8; ++i) id.push_back(kHex[(b >> (60 - 4 * i)) & 15]);
  return id;
}

Status BlobStore::init() {
  BITFLEET_RETURN_IF_ERROR(common::make_directories(root_ + "/blobs"));
  BITFLEET_RETURN_IF_ERROR(common::make_directories(root_ + "/tmp"));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ + "/tmp", ec)) fs::remove(entry.path(), ec);
  return Status::ok();
}

std::string BlobStore::temp_path() const { return root_ + "/tmp/" + new_id("upload-"); }

std::string BlobStore::path(const std::string& id) const { return root_ + "/blobs/" + id; }

Status BlobStore::adopt(const std::string& temp_path, const std::string& id) const {
  {
    common::FileDescriptor fd(::open(temp_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid() || ::fsync(fd.get()) != 0) return io_error("fsync of " + temp_path + ": " + std::strerror(errno));
  }
  if (::rename(temp_path.c_str(), path(id).c_str()) != 0) {
    return io_error("moving " + temp_path + " into the blob store: " + std::strerror(errno));
  }
  return common::sync_directory(root_ + "/blobs");
}

void BlobStore::discard(const std::string& temp_path) const { ::unlink(temp_path.c_str()); }

Status BlobStore::put(const std::string& id, std::string_view bytes) const {
  return common::write_file_atomic(path(id), bytes);
}

Result<int64_t> BlobStore::remove_unreferenced(const std::vector<std::string>& referenced) const {
  const std::set<std::string> keep(referenced.begin(), referenced.end());
  std::error_code ec;
  int64_t removed = 0;
  for (const auto& entry : fs::directory_iterator(root_ + "/blobs", ec)) {
    if (keep.contains(entry.path().filename().string())) continue;
    if (fs::remove(entry.path(), ec)) ++removed;
  }
  if (ec) return io_error("sweeping " + root_ + "/blobs: " + ec.message());
  return removed;
}

Status BlobStore::remove(const std::string& id) const {
  if (id.empty()) return Status::ok();
  if (::unlink(path(id).c_str()) != 0 && errno != ENOENT) {
    return io_error("removing blob " + id + ": " + std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace bitfleet::coordinator
