#include "common/net/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <limits>

#include "common/file_util.h"

namespace bitfleet::net {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct HttpClient::Connection {
  asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
};

std::string HttpResponse::problem_text() const {
  auto type = headers.find("content-type");
  if (type != headers.end() && type->second.find("json") != std::string::npos) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("title")) {
      std::string text = j["title"].is_string() ? j["title"].get<std::string>() : "";
      if (j.contains("detail") && j["detail"].is_string()) text += ": " + j["detail"].get<std::string>();
      return text;
    }
  }
  return "HTTP " + std::to_string(status) + (body.empty() ? "" : ": " + body.substr(0, 200));
}

Result<Endpoint> parse_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return invalid_argument("URL \"" + std::string(url) + "\" must start with http:// (put TLS in front of the coordinator)");
  }
  url.remove_prefix(kScheme.size());
  Endpoint e;
  auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos) {
    e.base_path = std::string(url.substr(slash));
    while (!e.base_path.empty() && e.base_path.back() == '/') e.base_path.pop_back();
  }
  auto colon = authority.rfind(':');
  if (colon == std::string_view::npos) {
    e.host = std::string(authority);
    e.port = "80";
  } else {
    e.host = std::string(authority.substr(0, colon));
    e.port = std::string(authority.substr(colon + 1));
  }
  if (e.host.empty() || e.port.empty()) return invalid_argument("URL \"" + std::string(url) + "\" has no host or port");
  const bool digits = std::all_of(e.port.begin(), e.port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || e.port.size() > 5 || std::stoi(e.port) < 1 || std::stoi(e.port) > 65535) {
    return invalid_argument("URL \"http://" + std::string(url) + "\": port \"" + e.port + "\" is not a number in [1, 65535]");
  }
  return e;
}

HttpClient::HttpClient(Endpoint endpoint, std::string bearer_token, std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), token_(std::move(bearer_token)), timeout_(timeout) {}

HttpClient::~HttpClient() {
  if (connection_) {
    beast::error_code ec;
    connection_->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  }
}

std::string HttpClient::full_target(const std::string& target) const { return endpoint_.base_path + target; }

Status HttpClient::connect() {
  connection_ = std::make_unique<Connection>();
  beast::error_code ec;
  tcp::resolver resolver(connection_->io);
  auto results = resolver.resolve(endpoint_.host, endpoint_.port, ec);
  if (ec) return unavailable("resolving " + endpoint_.host + ": " + ec.message());
  connection_->stream.expires_after(timeout_);
  connection_->stream.connect(results, ec);
  if (ec) {
    connection_.reset();
    return unavailable("connecting to " + endpoint_.host + ":" + endpoint_.port + ": " + ec.message());
  }
  return Status::ok();
}

namespace {

template <typename RequestBody, typename ResponseBody>
Status exchange(beast::tcp_stream& stream, beast::flat_buffer& buffer, http::request<RequestBody>& req,
                http::response_parser<ResponseBody>& parser, std::chrono::milliseconds timeout) {
  beast::error_code ec;
  stream.expires_after(timeout);
  http::write(stream, req, ec);
  if (ec) return unavailable("sending " + std::string(req.target()) + ": " + ec.message());
  stream.expires_after(timeout);
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // not boost::none: see http_server.cpp
  http::read(stream, buffer, parser, ec);
  if (ec) return unavailable("reading the response to " + std::string(req.target()) + ": " + ec.message());
  return Status::ok();
}

template <typename Body>
HttpResponse to_response(http::response<Body>& res, std::string body) {
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(body);
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  return out;
}

// The headers every request carries, then the caller's.
template <typename Body>
void set_headers(http::request<Body>& req, const std::string& host, const std::string& token,
                 std::string_view content_type, const HttpClient::Headers& headers) {
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "bitfleet");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (!content_type.empty()) req.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  for (const auto& [k, v] : headers) req.set(k, v);
}

template <typename Body>
Result<HttpResponse> round_trip(beast::tcp_stream& stream, beast::flat_buffer& buffer, http::request<Body>& req,
                                std::chrono::milliseconds timeout) {
  req.prepare_payload();
  http::response_parser<http::string_body> parser;
  BITFLEET_RETURN_IF_ERROR(exchange(stream, buffer, req, parser, timeout));
  auto res = parser.release();
  std::string text = std::move(res.body());
  return to_response(res, std::move(text));
}

}  // namespace

template <typename Attempt>
Result<HttpResponse> HttpClient::send(Attempt&& attempt) {
  for (int tries = 0; tries < 2; ++tries) {
    const bool reused = connection_ != nullptr;
    if (!connection_) BITFLEET_RETURN_IF_ERROR(connect());
    Result<HttpResponse> result = attempt(*connection_);
    if (result.is_ok()) {
      auto connection = result->headers.find("connection");
      if (connection != result->headers.end() && connection->second == "close") connection_.reset();
      return result;
    }
    connection_.reset();
    if (!reused || result.status().code() != StatusCode::kUnavailable) return result.status();
  }
  return unavailable("the server kept closing the connection");
}

Result<HttpResponse> HttpClient::request(std::string_view method, const std::string& target, std::string_view body,
                                         const Headers& headers) {
  return send([&](Connection& c) -> Result<HttpResponse> {
    http::request<http::string_body> req{http::string_to_verb(beast::string_view(method.data(), method.size())), full_target(target), 11};
    set_headers(req, endpoint_.host, token_, body.empty() ? "" : "application/json", headers);
    req.body() = std::string(body);
    return round_trip(c.stream, c.buffer, req, timeout_);
  });
}

Result<HttpResponse> HttpClient::upload(std::string_view method, const std::string& target, const std::string& path,
                                        const Headers& headers) {
  return send([&](Connection& c) -> Result<HttpResponse> {
    http::request<http::file_body> req{http::string_to_verb(beast::string_view(method.data(), method.size())), full_target(target), 11};
    set_headers(req, endpoint_.host, token_, "application/octet-stream", headers);
    beast::error_code ec;
    req.body().open(path.c_str(), beast::file_mode::scan, ec);
    if (ec) return io_error("opening " + path + ": " + ec.message());
    return round_trip(c.stream, c.buffer, req, timeout_);
  });
}

Result<HttpResponse> HttpClient::download(const std::string& target, const std::string& path) {
  const std::string tmp = path + ".part";
  auto result = send([&](Connection& c) -> Result<HttpResponse> {
    http::request<http::empty_body> req{http::verb::get, full_target(target), 11};
    req.set(http::field::host, endpoint_.host);
    req.set(http::field::user_agent, "bitfleet");
    if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
    // Read the header first: a 2xx body goes to the file, anything else into memory.
    beast::error_code ec;
    c.stream.expires_after(timeout_);
    http::write(c.stream, req, ec);
    if (ec) return unavailable("sending " + target + ": " + ec.message());
    http::response_parser<http::empty_body> header;
    header.body_limit(std::numeric_limits<std::uint64_t>::max());  // not boost::none: see http_server.cpp
    c.stream.expires_after(timeout_);
    http::read_header(c.stream, c.buffer, header, ec);
    if (ec) return unavailable("reading the response to " + target + ": " + ec.message());
    if (header.get().result_int() / 100 != 2) {
      http::response_parser<http::string_body> parser(std::move(header));
      http::read(c.stream, c.buffer, parser, ec);
      if (ec) return unavailable("reading the response to " + target + ": " + ec.message());
      auto res = parser.release();
      std::string text = std::move(res.body());
      return to_response(res, std::move(text));
    }
    http::response_parser<http::file_body> parser(std::move(header));
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // not boost::none: see http_server.cpp
    parser.get().body().open(tmp.c_str(), beast::file_mode::write, ec);
    if (ec) return io_error("creating " + tmp + ": " + ec.message());
    http::read(c.stream, c.buffer, parser, ec);
    if (ec) return unavailable("downloading " + target + ": " + ec.message());
    parser.get().body().close();
    return to_response(parser.get(), std::string());
  });
  if (result.is_ok() && result->ok()) {
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) return io_error("renaming " + tmp + " to " + path + ": " + ec.message());
  } else {
    std::filesystem::remove(tmp);
  }
  return result;
}

}  // namespace bitfleet::net
