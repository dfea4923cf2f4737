#include "coordinator/auth.h"

#include <sys/stat.h>

#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/json_fields.h"
#include "common/net/bearer.h"
#include "common/net/sha256.h"

namespace bitfleet::coordinator {
namespace {

std::string random_token() {
  std::random_device device;
  static const char* kAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string token = "bf_";
  for (int i = 0; i < 40; ++i) token.push_back(kAlphabet[device() % 62]);
  return token;
}

Result<std::string> token_file(const std::string& path, bool* created) {
  if (std::filesystem::exists(path)) {
    BITFLEET_ASSIGN_OR_RETURN(std::string token, common::read_file(path));
    while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
    if (token.size() < 16) return invalid_argument(path + ": token is too short");
    return token;
  }
  std::string token = random_token();
  BITFLEET_RETURN_IF_ERROR(common::write_file_atomic(path, token + "\n"));
  if (::chmod(path.c_str(), 0600) != 0) return io_error("chmod 0600 " + path);
  *created = true;
  return token;
}

}  // namespace

Result<Auth> Auth::from_file(const std::string& path) {
  BITFLEET_ASSIGN_OR_RETURN(std::string text, common::read_file(path));
  BITFLEET_ASSIGN_OR_RETURN(nlohmann::json j, common::parse_json(text, path));
  if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array()) {
    return invalid_argument(path + ": expected {\"tokens\": [{\"token\", \"tenant\", \"role\"}]}");
  }
  Auth auth;
  for (size_t i = 0; i < j["tokens"].size(); ++i) {
    common::JsonFields f(j["tokens"][i], "tokens[" + std::to_string(i) + "]");
    std::string token = f.string("token", std::nullopt, 4096);
    std::string tenant = f.string("tenant", std::nullopt, 128);
    std::string role = f.string("role", "user", 16);
    BITFLEET_RETURN_IF_ERROR(f.finish().with_context(path));
    if (token.size() < 16) return invalid_argument(path + ": tokens[" + std::to_string(i) + "].token is shorter than 16 characters");
    Principal p{tenant, Role::kUser};
    if (role == "admin") {
      p.role = Role::kAdmin;
    } else if (role == "worker") {
      p.role = Role::kWorker;
    } else if (role == "metrics") {
      p.role = Role::kMetrics;
    } else if (role != "user") {
      return invalid_argument(path + ": tokens[" + std::to_string(i) + "].role must be user, admin, worker or metrics");
    }
    auth.by_digest_[net::sha256_hex(token)] = p;
  }
  return auth;
}

Result<Auth> Auth::default_tokens(const std::string& data_dir, std::string* created) {
  Auth auth;
  if (created != nullptr) created->clear();
  for (auto [name, principal] : {std::pair<const char*, Principal>{"admin", {"default", Role::kAdmin}},
                                 {"worker", {"workers", Role::kWorker}},
                                 {"metrics", {"metrics", Role::kMetrics}}}) {
    bool made = false;
    const std::string path = data_dir + "/" + name + ".token";
    BITFLEET_ASSIGN_OR_RETURN(std::string token, token_file(path, &made));
    auth.by_digest_[net::sha256_hex(token)] = principal;
    if (made && created != nullptr) *created += (created->empty() ? "" : " ") + path;
  }
  return auth;
}

std::optional<Principal> Auth::authenticate(std::string_view authorization) const {
  const auto token = net::bearer_token(authorization);
  if (!token) return std::nullopt;
  std::string digest = net::sha256_hex(*token);
  auto it = by_digest_.find(digest);
  if (it == by_digest_.end()) return std::nullopt;
  Principal p = it->second;
  p.token_digest = std::move(digest);
  return p;
}

}  // namespace bitfleet::coordinator
