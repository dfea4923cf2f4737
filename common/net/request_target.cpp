#include "common/net/request_target.h"

#include <cctype>

namespace bitfleet::net {
namespace {

bool hex_value(char c, int& v) {
  if (c >= '0' && c <= '9') v = c - '0';
  else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
  else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
  else return false;
  return true;
}

// Percent-decoding; '+' is a space in queries only.
bool decode(std::string_view in, bool query, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      int hi, lo;
      if (i + 2 >= in.size()) return false;
      if (!hex_value(in[i + 1], hi) || !hex_value(in[i + 2], lo)) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (query && in[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return true;
}

}  // namespace

bool parse_target(std::string_view target, Request& r) {
  auto q = target.find('?');
  if (!decode(target.substr(0, q), false, r.path)) return false;
  if (q == std::string_view::npos) return true;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    std::string key, value;
    if (!decode(pair.substr(0, eq), true, key)) return false;
    if (eq != std::string_view::npos && !decode(pair.substr(eq + 1), true, value)) return false;
    if (!key.empty()) r.query[key] = value;
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return true;
}


Status check_request_head(const Request& r, unsigned version) {
  if (version >= 11 && !r.headers.contains("host")) {
    return invalid_argument("an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)", "Host");
  }
  auto te = r.headers.find("transfer-encoding");
  if (te != r.headers.end()) {
    std::string coding;
    for (char c : te->second) {
      if (c != ' ' && c != '\t') coding.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    if (coding != "chunked") {
      return invalid_argument("Transfer-Encoding \"" + te->second.substr(0, 60) +
                                  "\" is not supported: send the body as is, or chunked alone",
                              "Transfer-Encoding");
    }
  }
  return Status::ok();
}

}  // namespace bitfleet::net
