// bitfleet's view of an HTTP exchange: a parsed Request and the Response a handler returns,
// independent of Beast so that handlers stay plain functions.
#pragma once

#include <map>
#include <string>

namespace bitfleet::net {

struct Request {
  std::string method;
  std::string path;                           // decoded, without the query
  std::map<std::string, std::string> query;   // decoded; a repeated name keeps the last value
  std::map<std::string, std::string> headers; // lower-case names
  std::string body;                           // JSON requests
  std::string body_file;                      // streamed uploads: the temporary file holding the body
  std::map<std::string, std::string> params;  // path parameters, set by the router
  std::string route;                          // the matched route template, for metrics ("/v1/jobs/{id}")

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string file;  // when set, the body is this file's content (downloads)
  std::map<std::string, std::string> headers;
};

}  // namespace bitfleet::net
