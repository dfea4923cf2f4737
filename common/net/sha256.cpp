#include "common/net/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/file_util.h"

namespace bitfleet::net {
namespace {

struct DigestContext {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
  DigestContext() { EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr); }
  void update(const void* data, size_t n) { EVP_DigestUpdate(ctx.get(), data, n); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx.get(), digest, &length);
    static const char* kHex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
      out.push_back(kHex[digest[i] >> 4]);
      out.push_back(kHex[digest[i] & 15]);
    }
    return out;
  }
};

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  DigestContext d;
  d.update(bytes.data(), bytes.size());
  return d.hex();
}

Result<std::string> sha256_file(const std::string& path) {
  common::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("opening " + path + ": " + std::strerror(errno));
  DigestContext d;
  std::unique_ptr<char[]> buffer(new char[1 << 20]);
  while (true) {
    ssize_t n = ::read(fd.get(), buffer.get(), 1 << 20);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("reading " + path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    d.update(buffer.get(), static_cast<size_t>(n));
  }
  return d.hex();
}

std::string weights_sha256(const std::string& backbone_dir) {
  for (const char* name : {"model.safetensors", "model.safetensors.index.json"}) {
    if (auto d = sha256_file(backbone_dir + "/" + name); d.is_ok()) return *d;
  }
  return "";
}

}  // namespace bitfleet::net
