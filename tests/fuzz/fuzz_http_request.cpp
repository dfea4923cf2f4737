// A request's bytes as they arrive on the coordinator's socket: Beast's parser with the server's
// limits, then bitfleet's own checks of the head (Host, Transfer-Encoding) and the target's
// percent-decoding into path and query.
#include <cstddef>
#include <cstdint>
#include <limits>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/net/request_target.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = parser.put(boost::asio::buffer(data, size), ec);
  if (used > size) __builtin_trap();
  if (!parser.is_header_done()) return 0;
  const auto& head = parser.get();
  bitfleet::net::Request r;
  r.method = std::string(head.method_string());
  for (const auto& field : head) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(field.value());
  }
  (void)bitfleet::net::check_request_head(r, head.version());
  if (bitfleet::net::parse_target(std::string_view(head.target().data(), head.target().size()), r)) {
    // A decoded path is never longer than the target it came from.
    if (r.path.size() > head.target().size()) __builtin_trap();
  }
  return 0;
}
