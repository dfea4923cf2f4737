// Status and Result<T>: how every fallible call in bitfleet reports failure.
//
// A function that can fail for reasons outside the program's control (I/O, parsing, the network,
// user input) returns a Status or a Result<T>. The message names what failed (a file and line, a
// JSON field, a peer); `field` optionally carries the machine-readable location of bad input (a
// dotted JSON path such as "hyperparameters.learning_rate"), which the HTTP layer turns into the
// problem+json body. Exceptions never cross module boundaries or threads.
//
// Thread-safety: values; copy freely.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bitfleet {

enum class StatusCode {
  kOk,
  kInvalidArgument,     // bad input from a user (HTTP 400/422)
  kNotFound,            // HTTP 404
  kAlreadyExists,       // HTTP 409
  kConflict,            // stale attempt, wrong state (HTTP 409)
  kFailedPrecondition,  // HTTP 409/412
  kUnauthenticated,     // HTTP 401
  kPermissionDenied,    // HTTP 403
  kResourceExhausted,   // too large, too many (HTTP 413/429)
  kUnavailable,         // peer down, retry later (HTTP 503)
  kDeadlineExceeded,    // timed out
  kCancelled,
  kDataLoss,            // corrupt file
  kIoError,             // the OS said no
  kInternal,            // a bug
};

std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message, std::string field = {})
      : code_(code), message_(std::move(message)), field_(std::move(field)) {}

  static Status ok() { return {}; }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& field() const { return field_; }

  // "invalid_argument: hyperparameters.epochs: must be an integer in [1, 100]"
  std::string to_string() const;

  // The same failure, its message prefixed by where it happened ("reading spec.json: ...").
  Status with_context(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string field_;
};

inline Status invalid_argument(std::string message, std::string field = {}) {
  return {StatusCode::kInvalidArgument, std::move(message), std::move(field)};
}
inline Status not_found(std::string message) { return {StatusCode::kNotFound, std::move(message)}; }
inline Status conflict(std::string message) { return {StatusCode::kConflict, std::move(message)}; }
inline Status io_error(std::string message) { return {StatusCode::kIoError, std::move(message)}; }
inline Status data_loss(std::string message) { return {StatusCode::kDataLoss, std::move(message)}; }
inline Status unavailable(std::string message) {
  return {StatusCode::kUnavailable, std::move(message)};
}
inline Status internal_error(std::string message) {
  return {StatusCode::kInternal, std::move(message)};
}

// Holds either a T or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : state_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(state_).is_ok() && "Result needs a value or an error");
  }

  bool is_ok() const { return std::holds_alternative<T>(state_); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(state_);
  }

  T& value() & {
    assert(is_ok());
    return std::get<T>(state_);
  }
  const T& value() const& {
    assert(is_ok());
    return std::get<T>(state_);
  }
  T&& value() && {
    assert(is_ok());
    return std::get<T>(std::move(state_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace bitfleet

#define BITFLEET_CONCAT_INNER(a, b) a##b
#define BITFLEET_CONCAT(a, b) BITFLEET_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function if it is not ok.
#define BITFLEET_RETURN_IF_ERROR(expr)                 \
  do {                                                 \
    ::bitfleet::Status bitfleet_status_ = (expr);      \
    if (!bitfleet_status_.is_ok()) return bitfleet_status_; \
  } while (false)

// `lhs = value of expr`, or returns its Status from the enclosing function.
#define BITFLEET_ASSIGN_OR_RETURN(lhs, expr) \
  BITFLEET_ASSIGN_OR_RETURN_IMPL(BITFLEET_CONCAT(bitfleet_result_, __LINE__), lhs, expr)
#define BITFLEET_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.is_ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
