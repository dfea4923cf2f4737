#include "common/net/http_server.h"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/optional.hpp>

#include <condition_variable>
#include <limits>
#include <mutex>
#include <optional>

#include "common/log.h"
#include "common/net/problem.h"
#include "common/net/request_target.h"

namespace bitfleet::net {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct HttpServer::State {
  // Optional so that stop() can destroy them: the handlers still queued hold the sessions, and
  // the sessions hold this State, so only destroying the io_context breaks that cycle.
  std::optional<asio::io_context> io{std::in_place};
  asio::thread_pool handlers;
  std::optional<tcp::acceptor> acceptor{std::in_place, *io};
  ServerOptions options;
  std::atomic<bool> stopping{false};
  std::atomic<int> connections{0};  // live sessions, capped at options.max_connections
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

// Errors that mean the peer went away or timed out: the connection is closed without an answer.
bool is_disconnect(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
         ec == asio::error::connection_reset || ec == asio::error::eof || ec == asio::error::broken_pipe;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::State> state)
      : stream_(std::move(socket)), state_(std::move(state)) {
    ++state_->connections;
  }
  ~Session() { --state_->connections; }

  void run() { asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); }); }

 private:
  // A connection may rest between requests for idle_timeout (a fresh one for header_timeout);
  // once a request's first byte arrives, its whole header must follow within header_timeout.
  void read_header() {
    if (state_->stopping) return close();
    header_.emplace();
    header_->header_limit(kHeaderLimit);
    // Checked in on_header against this route's limit. (Not boost::none: Boost 1.74 compares the
    // length against an empty optional as if the limit were below every length.)
    header_->body_limit(std::numeric_limits<std::uint64_t>::max());
    if (buffer_.size() > 0) return read_rest_of_header();
    stream_.expires_after(served_ ? state_->options.idle_timeout : state_->options.header_timeout);
    stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
      if (ec) return self->close();
      self->buffer_.commit(n);
      self->read_rest_of_header();
    });
  }

  void read_rest_of_header() {
    stream_.expires_after(state_->options.header_timeout);
    http::async_read_header(stream_, buffer_, *header_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  // A header past this is 431, or 414 when its request line alone is past it.
  static constexpr size_t kHeaderLimit = 16 * 1024;

  void on_header(beast::error_code ec) {
    if (ec) {
      if (is_disconnect(ec)) return close();
      // A malformed request: answer and close.
      keep_alive_ = false;
      started_ = std::chrono::steady_clock::now();
      state_->begin_request();
      if (ec == http::error::header_limit) {
        // The parser has the target once the request line is whole: without one, the line itself
        // was too long.
        if (header_->get().target().empty()) {
          return write(problem(414, "", "the request line is longer than the " + std::to_string(kHeaderLimit) +
                                            "-byte limit on a request's header"));
        }
        return write(problem(431, "", "the request header is larger than " + std::to_string(kHeaderLimit) + " bytes"));
      }
      return write(problem(400, "", "the request could not be parsed: " + ec.message()));
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
    head_only_ = head.method() == http::verb::head;
    if (Status ok = check_request_head(request_, head.version()); !ok.is_ok()) {
      keep_alive_ = false;
      return write(problem(ok, "", 400));
    }
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
    if (ec && !is_disconnect(ec) && ec.category() == http::make_error_code(http::error::bad_chunk).category()) {
      // The body is malformed (a bad chunk size, say): the client is told, then the connection
      // closes, since where the next request would start is unknown.
      keep_alive_ = false;
      return write(problem(400, "", "the request body could not be read: " + ec.message(), "body"));
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
    served_ = true;
    if (!response.file.empty()) {
      auto res = std::make_shared<http::response<http::file_body>>(http::status::ok, 11);
      beast::error_code ec;
      res->body().open(response.file.c_str(), beast::file_mode::scan, ec);
      if (!ec) {
        res->result(static_cast<http::status>(response.status));
        res->set(http::field::content_type, response.content_type);
        for (const auto& [k, v] : response.headers) res->set(k, v);
        res->keep_alive(keep_alive_ && !state_->stopping);
        res->prepare_payload();
        if (head_only_) return send(header_only(*res, res->body().size()));
        return send(res);
      }
      response = problem(404, "", "the content is no longer available");
    }
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(response.status), 11);
    res->set(http::field::server, "bitfleet");
    res->set(http::field::content_type, response.content_type);
    for (const auto& [k, v] : response.headers) res->set(k, v);
    res->keep_alive(keep_alive_ && !state_->stopping);
    const size_t length = response.body.size();
    res->body() = std::move(response.body);
    res->prepare_payload();
    if (head_only_) return send(header_only(*res, length));
    send(res);
  }

  // The answer to HEAD: GET's header, Content-Length included, and no body.
  template <typename Message>
  static std::shared_ptr<http::response<http::empty_body>> header_only(const Message& full, uint64_t length) {
    auto res = std::make_shared<http::response<http::empty_body>>(full.result(), 11);
    for (const auto& field : full) res->set(field.name_string(), field.value());
    res->keep_alive(full.keep_alive());
    res->content_length(length);
    return res;
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
  bool head_only_ = false;  // a HEAD request: the response's header only
  bool served_ = false;     // a response was written: the connection now rests for idle_timeout
  int status_ = 0;
  std::chrono::steady_clock::time_point started_;
};

void accept_next(std::shared_ptr<HttpServer::State> state);

// Resumes accepting after `delay`: at the connection cap, or when the process is out of file
// descriptors (EMFILE), accepting at once would spin; connections wait in the listen backlog.
void accept_after(std::shared_ptr<HttpServer::State> state, std::chrono::milliseconds delay) {
  auto timer = std::make_shared<asio::steady_timer>(*state->io, delay);
  timer->async_wait([state, timer](beast::error_code) {
    if (!state->stopping) accept_next(state);
  });
}

void accept_next(std::shared_ptr<HttpServer::State> state) {
  if (state->connections >= state->options.max_connections) return accept_after(state, std::chrono::milliseconds(10));
  state->acceptor->async_accept(asio::make_strand(*state->io), [state](beast::error_code ec, tcp::socket socket) {
    if (state->stopping) return;
    if (!ec) {
      std::make_shared<Session>(std::move(socket), state)->run();
    } else if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
               ec == asio::error::no_memory || ec.value() == ENFILE) {
      static std::atomic<int64_t> warned{0};
      if (warned++ % 100 == 0) BITFLEET_LOG(kWarning) << "accept: " << ec.message() << "; pausing accepts for 50 ms";
      return accept_after(state, std::chrono::milliseconds(50));
    }
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
  auto& acceptor = *state_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("listening on " + options_.host + ":" + std::to_string(options_.port) + ": " + ec.message());
  bound_port_ = acceptor.local_endpoint().port();
  accept_next(state_);
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    io_threads_.emplace_back([state = state_] { state->io->run(); });
  }
  running_ = true;
  return Status::ok();
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  if (!running_) return;
  running_ = false;
  state_->stopping = true;
  asio::post(*state_->io, [state = state_] {
    beast::error_code ec;
    state->acceptor->close(ec);
  });
  {
    std::unique_lock<std::mutex> lock(state_->mutex);
    state_->idle.wait_for(lock, grace, [&] { return state_->in_flight == 0; });
  }
  state_->io->stop();
  for (auto& t : io_threads_) t.join();
  io_threads_.clear();
  state_->handlers.join();
  // Handlers still queued (reads waiting on idle connections, writes posted by the pool) are
  // destroyed with the io_context, and the sessions with them; then nothing holds State but us.
  state_->acceptor.reset();
  state_->io.reset();
}

}  // namespace bitfleet::net
