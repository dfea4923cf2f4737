// SHA-256 of bytes and of files (OpenSSL), as lower-case hex: content addresses for datasets,
// backbones and artifacts. Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace bitfleet::net {

std::string sha256_hex(std::string_view bytes);
Result<std::string> sha256_file(const std::string& path);

}  // namespace bitfleet::net
