#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

namespace bitfleet::common {
namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_directory(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

}  // namespace

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

Status write_all(int fd, std::string_view data, std::string_view what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("writing " + std::string(what) + ": " + errno_text());
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

Status sync_directory(const std::string& path) {
  FileDescriptor dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return io_error("opening directory " + path + ": " + errno_text());
  if (::fsync(dir.get()) != 0) return io_error("fsync of directory " + path + ": " + errno_text());
  return Status::ok();
}

Status write_file_atomic(const std::string& path, std::string_view contents) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rng());
  {
    FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid()) return io_error("creating " + tmp + ": " + errno_text());
    Status written = write_all(fd.get(), contents, tmp);
    if (written.is_ok() && ::fsync(fd.get()) != 0) written = io_error("fsync of " + tmp + ": " + errno_text());
    if (!written.is_ok()) {
      ::unlink(tmp.c_str());
      return written;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status failed = io_error("renaming " + tmp + " to " + path + ": " + errno_text());
    ::unlink(tmp.c_str());
    return failed;
  }
  return sync_directory(parent_directory(path));
}

Result<std::string> read_file(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("opening " + path + ": " + errno_text());
  std::string out;
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("reading " + path + ": " + errno_text());
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

Status make_directories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return io_error("creating directory " + path + ": " + ec.message());
  return Status::ok();
}

}  // namespace bitfleet::common
