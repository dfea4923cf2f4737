#include "worker/agent/file_cache.h"

#include <unistd.h>

#include <filesystem>

#include "common/file_util.h"
#include "common/net/sha256.h"

namespace bitfleet::agent {

Status FileCache::init() { return common::make_directories(dir_); }

Result<std::string> FileCache::fetch(net::HttpClient& client, const std::string& target, const std::string& sha256) {
  if (sha256.size() != 64 || sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return invalid_argument("\"" + sha256 + "\" is not a sha256 digest");
  }
  const std::string path = dir_ + "/" + sha256;
  if (std::filesystem::exists(path)) return path;
  const std::string part = path + ".download-" + std::to_string(::getpid());
  BITFLEET_ASSIGN_OR_RETURN(net::HttpResponse response, client.download(target, part));
  if (!response.ok()) {
    std::filesystem::remove(part);
    Status failed(response.status == 404 ? StatusCode::kNotFound : StatusCode::kUnavailable,
                  "downloading " + target + ": " + response.problem_text());
    return failed;
  }
  BITFLEET_ASSIGN_OR_RETURN(std::string digest, net::sha256_file(part));
  if (digest != sha256) {
    std::filesystem::remove(part);
    return data_loss("downloading " + target + ": content has sha256 " + digest + ", expected " + sha256);
  }
  std::error_code ec;
  std::filesystem::rename(part, path, ec);
  if (ec) return io_error("moving " + part + " into the cache: " + ec.message());
  return path;
}

}  // namespace bitfleet::agent
