#include "cli/uploader.h"

#include <filesystem>

#include "common/net/sha256.h"
#include "common/table_reader.h"

namespace bitfleet::cli {

Result<std::string> Uploader::file_id(const std::string& path) {
  if (auto known = by_path_.find(path); known != by_path_.end()) return known->second;
  BITFLEET_ASSIGN_OR_RETURN(auto format, common::table_format_from_name(path));
  const std::string format_name(common::table_format_name(format));
  auto digest = net::sha256_file(path);
  if (!digest.is_ok()) return invalid_argument(path + ": " + digest.status().message());
  const std::string content_key = *digest + "." + format_name;
  if (auto known = by_content_.find(content_key); known != by_content_.end()) {
    return by_path_[path] = known->second;
  }

  BITFLEET_ASSIGN_OR_RETURN(auto existing, api_.list("/v1/files", "sha256=" + *digest, 100));
  std::string id;
  for (const auto& f : existing) {
    if (f.value("format", "") == format_name) {
      id = f["id"].get<std::string>();
      ++reused_;
      break;
    }
  }
  if (id.empty()) {
    const std::string filename = std::filesystem::path(path).filename().string();
    auto created = api_.upload("/v1/files?filename=" + url_encode(filename), path, new_idempotency_key());
    if (!created.is_ok()) return Status(created.status().code(), path + ": " + created.status().message());
    id = (*created)["id"].get<std::string>();
    ++uploaded_;
  }
  by_content_[content_key] = id;
  return by_path_[path] = id;
}

}  // namespace bitfleet::cli
