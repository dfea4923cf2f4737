// SHA-256 of bytes and of files (OpenSSL), as lower-case hex: content addresses for datasets,
// backbones and artifacts. Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace bitfleet::net {

std::string sha256_hex(std::string_view bytes);
Result<std::string> sha256_file(const std::string& path);
// A backbone directory's identity: the sha256 of model.safetensors (or of its shard index); ""
// when it has neither. Workers register it; artifacts carry it; bitfleet-serve checks it.
std::string weights_sha256(const std::string& backbone_dir);

}  // namespace bitfleet::net
