#include "common/net/problem.h"

#include <nlohmann/json.hpp>

namespace bitfleet::net {
namespace {

const char* slug(int status) {
  switch (status) {
    case 400: return "bad-request";
    case 401: return "unauthenticated";
    case 403: return "forbidden";
    case 404: return "not-found";
    case 405: return "method-not-allowed";
    case 409: return "conflict";
    case 413: return "too-large";
    case 414: return "uri-too-long";
    case 415: return "unsupported-media-type";
    case 429: return "too-many-requests";
    case 431: return "header-too-large";
    case 422: return "invalid";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal" : "error";
  }
}

const char* title_of(int status) {
  switch (status) {
    case 400: return "Bad request";
    case 401: return "Authentication required";
    case 403: return "Forbidden";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 409: return "Conflict";
    case 413: return "Request too large";
    case 414: return "URI too long";
    case 415: return "Unsupported media type";
    case 429: return "Too many requests";
    case 431: return "Request header fields too large";
    case 422: return "Invalid request";
    case 503: return "Unavailable";
    case 504: return "Timed out";
    default: return status >= 500 ? "Internal error" : "Error";
  }
}

}  // namespace

int http_status(StatusCode code, int invalid_status) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return invalid_status;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kConflict:
    case StatusCode::kFailedPrecondition: return 409;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kResourceExhausted: return 413;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

Response problem(int status, const std::string& title, const std::string& detail, const std::string& field,
                 const std::string& instance) {
  nlohmann::json body = {{"type", std::string("urn:bitfleet:problem:") + slug(status)},
                         {"title", title.empty() ? title_of(status) : title},
                         {"status", status},
                         {"detail", detail}};
  if (!instance.empty()) body["instance"] = instance;
  if (!field.empty()) body["field"] = field;
  Response r;
  r.status = status;
  r.content_type = "application/problem+json";
  // Details quote what the client sent; never let its bytes make the response unserialisable.
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (status == 401) r.headers["WWW-Authenticate"] = "Bearer";
  return r;
}

Response problem(const Status& status, const std::string& instance, int invalid_status) {
  const int code = http_status(status.code(), invalid_status);
  // Internal details stay in the log; a client learns that something failed, not how.
  std::string detail = code >= 500 && code != 503 ? "the coordinator could not complete the request" : status.message();
  return problem(code, "", detail, status.field(), instance);
}

}  // namespace bitfleet::net
