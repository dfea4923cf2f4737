// Small file helpers with bitfleet's durability rule: a file that others may read is written to a
// temporary name in the same directory, fsynced, renamed over the target, and the directory is
// fsynced, so a crash leaves either the old file or the whole new one.
// Thread-safety: free functions; concurrent writers of one path must be serialised by the caller.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bitfleet::common {

Status write_file_atomic(const std::string& path, std::string_view contents);
Result<std::string> read_file(const std::string& path);
Status make_directories(const std::string& path);
// fsync of a directory, so that a rename or create inside it survives a crash.
Status sync_directory(const std::string& path);

// An open file descriptor, closed on destruction.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(other.release()) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// Writes all of `data` to `fd`, retrying short writes and EINTR.
Status write_all(int fd, std::string_view data, std::string_view what);

}  // namespace bitfleet::common
