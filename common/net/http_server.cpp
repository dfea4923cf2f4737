#include "common/net/http_server.h"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/optional.hpp>

#include <condition_variable>
#include <limits>
#include <mutex>

#include "common/log.h"
#include "common/net/problem.h"

namespace bitfleet::net {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct HttpServer::State {
  asio::io_context io;
  asio::thread_pool handlers;
  tcp::acceptor acceptor{io};
  ServerOptions options;
  std::atomic<bool> stopping{false};
  std::mutex mutex;
  std::condition_variable idle;
  int in_flight = 0;  // requests between header read and response written

  explicit State(ServerOptions o) : handlers(static_cast<size_t>(std::max(1, o.handler_threads))), options(std::move(o)) {}
  void begin_request() {
    std::lock_guard<std::mutex> lock(mutex);
    ++in_flight;
  }
  void end_request() {
    std::lock_guard<std::mutex> lock(mutex);
    if (--in_flight == 0) idle.notify_all();
  }
};

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

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::State> state)
      : stream_(std::move(socket)), state_(std::move(state)) {}

  void run() { asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); }); }

 private:
  void read_header() {
    if (state_->stopping) return close();
    header_.emplace();
    header_->header_limit(16 * 1024);
    // Checked in on_header against this route's limit. (Not boost::none: Boost 1.74 compares the
    // length against an empty optional as if the limit were below every length.)
    header_->body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_.expires_after(state_->options.idle_timeout);
    http::async_read_header(stream_, buffer_, *header_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec) {
      if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
          ec == asio::error::connection_reset || ec == asio::error::eof) {
        return close();
      }
      // A malformed request: answer 400 (or 431 for a huge header) and close.
      keep_alive_ = false;
      started_ = std::chrono::steady_clock::now();
      state_->begin_request();
      const int status = ec == http::error::header_limit ? 431 : 400;
      return write(problem(status, "", "the request could not be parsed: " + ec.message()));
    }
    started_ = std::chrono::steady_clock::now();
    state_->begin_request();
    const auto& head = header_->get();
    request_ = Request{};
    request_.method = std::string(head.method_string());
    for (const auto& field : head) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      request_.headers[name] = std::string(field.value());
    }
    keep_alive_ = head.keep_alive();
    if (!parse_target(std::string_view(head.target().data(), head.target().size()), request_)) {
      keep_alive_ = false;
      return write(problem(400, "", "the request target is not validly percent-encoded"));
    }
    const bool expects_continue = beast::iequals(head[http::field::expect], "100-continue");
    const bool is_upload = state_->options.is_upload && state_->options.is_upload(request_.method, request_.path);
    const uint64_t limit = is_upload ? state_->options.max_upload_bytes : state_->options.max_body_bytes;
    if (header_->content_length() && *header_->content_length() > limit) {
      // Refused from the header alone, before the client sends the body.
      keep_alive_ = false;
      return write(problem(413, "", "the request body of " + std::to_string(*header_->content_length()) +
                                        " bytes is larger than the limit of " + std::to_string(limit) + " bytes"));
    }
    if (is_upload) {
      upload_.emplace(std::move(*header_));
      upload_->body_limit(state_->options.max_upload_bytes);
      request_.body_file = temp_path();
      beast::error_code open_ec;
      upload_->get().body().open(request_.body_file.c_str(), beast::file_mode::write, open_ec);
      if (open_ec) {
        BITFLEET_LOG(kError) << "cannot create " << request_.body_file << ": " << open_ec.message();
        keep_alive_ = false;
        return write(problem(503, "", "the coordinator cannot store uploads right now"));
      }
      return continue_then([self = shared_from_this()] {
        self->stream_.expires_after(self->state_->options.body_timeout);
        http::async_read(self->stream_, self->buffer_, *self->upload_,
                         [self](beast::error_code e, size_t) { self->on_body(e); });
      }, expects_continue);
    }
    body_.emplace(std::move(*header_));
    body_->body_limit(state_->options.max_body_bytes);
    continue_then([self = shared_from_this()] {
      self->stream_.expires_after(self->state_->options.body_timeout);
      http::async_read(self->stream_, self->buffer_, *self->body_,
                       [self](beast::error_code e, size_t) { self->on_body(e); });
    }, expects_continue);
  }

  template <typename Next>
  void continue_then(Next next, bool expects_continue) {
    if (!expects_continue) return next();
    auto res = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
    http::async_write(stream_, *res, [self = shared_from_this(), res, next](beast::error_code ec, size_t) {
      if (ec) {
        self->state_->end_request();
        return self->close();
      }
      next();
    });
  }

  void on_body(beast::error_code ec) {
    if (upload_) upload_->get().body().close();
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      const uint64_t limit = upload_ ? state_->options.max_upload_bytes : state_->options.max_body_bytes;
      return write(problem(413, "", "the request body is larger than the limit of " + std::to_string(limit) + " bytes"));
    }
    if (ec) {
      discard_upload();
      state_->end_request();
      return close();
    }
    if (body_) request_.body = std::move(body_->get().body());
    body_.reset();
    upload_.reset();
    // The handler touches SQLite and disk: run it on the pool, then write on the socket's executor.
    asio::post(state_->handlers, [self = shared_from_this()] {
      Response response;
      try {
        response = self->state_->options.handle(self->request_);
      } catch (const std::exception& e) {
        BITFLEET_LOG(kError) << self->request_.method << " " << self->request_.path << ": " << e.what();
        response = problem(500, "", "the coordinator could not complete the request");
      }
      asio::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        self->write(std::move(response));
      });
    });
  }

  void write(Response response) {
    discard_upload();
    status_ = response.status;
    if (!response.file.empty()) {
      auto res = std::make_shared<http::response<http::file_body>>(http::status::ok, 11);
      beast::error_code ec;
      res->body().open(response.file.c_str(), beast::file_mode::scan, ec);
      if (!ec) {
        res->result(static_cast<http::status>(response.status));
        res->set(http::field::content_type, response.content_type);
        for (const auto& [k, v] : response.headers) res->set(k, v);
        res->keep_alive(keep_alive_);
        res->prepare_payload();
        return send(res);
      }
      response = problem(404, "", "the content is no longer available");
    }
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(response.status), 11);
    res->set(http::field::server, "bitfleet");
    res->set(http::field::content_type, response.content_type);
    for (const auto& [k, v] : response.headers) res->set(k, v);
    res->keep_alive(keep_alive_ && !state_->stopping);
    res->body() = std::move(response.body);
    res->prepare_payload();
    send(res);
  }

  template <typename Message>
  void send(std::shared_ptr<Message> res) {
    stream_.expires_after(state_->options.body_timeout);
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - self->started_).count();
      if (self->state_->options.observe) self->state_->options.observe(self->request_, self->status_, seconds);
      self->state_->end_request();
      if (ec || !res->keep_alive() || self->state_->stopping) return self->close();
      self->read_header();
    });
  }

  std::string temp_path() const {
    static std::atomic<uint64_t> counter{0};
    return state_->options.upload_dir + "/body-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  }

  void discard_upload() {
    // A handler that kept the upload moved it away; anything left is removed.
    if (!request_.body_file.empty()) {
      ::unlink(request_.body_file.c_str());
      request_.body_file.clear();
    }
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<HttpServer::State> state_;
  boost::optional<http::request_parser<http::empty_body>> header_;
  boost::optional<http::request_parser<http::string_body>> body_;
  boost::optional<http::request_parser<http::file_body>> upload_;
  Request request_;
  bool keep_alive_ = true;
  int status_ = 0;
  std::chrono::steady_clock::time_point started_;
};

void accept_next(std::shared_ptr<HttpServer::State> state) {
  state->acceptor.async_accept(asio::make_strand(state->io), [state](beast::error_code ec, tcp::socket socket) {
    if (state->stopping) return;
    if (!ec) std::make_shared<Session>(std::move(socket), state)->run();
    accept_next(state);
  });
}

}  // namespace

HttpServer::HttpServer(ServerOptions options) : options_(std::move(options)) {}

HttpServer::~HttpServer() {
  if (running_) stop(std::chrono::milliseconds(0));
}

Status HttpServer::start() {
  state_ = std::make_shared<State>(options_);
  beast::error_code ec;
  auto address = asio::ip::make_address(options_.host, ec);
  if (ec) return invalid_argument("--listen: \"" + options_.host + "\" is not an IP address");
  tcp::endpoint endpoint(address, options_.port);
  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("listening on " + options_.host + ":" + std::to_string(options_.port) + ": " + ec.message());
  bound_port_ = acceptor.local_endpoint().port();
  accept_next(state_);
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    io_threads_.emplace_back([state = state_] { state->io.run(); });
  }
  running_ = true;
  return Status::ok();
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  if (!running_) return;
  running_ = false;
  state_->stopping = true;
  asio::post(state_->io, [state = state_] {
    beast::error_code ec;
    state->acceptor.close(ec);
  });
  {
    std::unique_lock<std::mutex> lock(state_->mutex);
    state_->idle.wait_for(lock, grace, [&] { return state_->in_flight == 0; });
  }
  state_->io.stop();
  for (auto& t : io_threads_) t.join();
  io_threads_.clear();
  state_->handlers.join();
}

}  // namespace bitfleet::net
