#include "coordinator/router.h"

#include <algorithm>

#include "common/net/problem.h"

namespace bitfleet::coordinator {

using net::problem;

// Segments of an absolute path. Empty segments ("/v1//jobs", a trailing "/") are kept, so such a
// path matches no route rather than a neighbouring one.
std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  if (path.empty() || path[0] != '/') return {""};
  size_t start = 1;
  while (true) {
    size_t slash = path.find('/', start);
    out.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

void Router::add(const std::string& method, const std::string& path_template, Handler handler) {
  routes_.push_back({method, path_template, split_path(path_template), std::move(handler)});
}

bool Router::match(const Route& route, const std::vector<std::string>& segments, Request* request) {
  if (route.segments.size() != segments.size()) return false;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& t = route.segments[i];
    if (t.size() > 2 && t.front() == '{' && t.back() == '}') {
      if (segments[i].empty()) return false;
      if (request) request->params[t.substr(1, t.size() - 2)] = segments[i];
    } else if (t != segments[i]) {
      return false;
    }
  }
  return true;
}

std::string Router::route_of(const std::string& method, const std::string& path) const {
  auto segments = split_path(path);
  const std::string& m = method == "HEAD" ? std::string("GET") : method;
  const Route* best = nullptr;
  for (const auto& r : routes_) {
    if (r.method == m && match(r, segments, nullptr) && (!best || literal_segments(r) > literal_segments(*best))) best = &r;
  }
  return best ? best->path_template : "";
}

// Literal segments a template has: where two templates match a path ("/v1/jobs/batch" and
// "/v1/jobs/{id}"), only the more literal one speaks for it, in dispatch and in Allow.
int Router::literal_segments(const Route& route) {
  int n = 0;
  for (const auto& t : route.segments) n += t.empty() || t.front() != '{';
  return n;
}

Response Router::dispatch(Request& request) const {
  auto segments = split_path(request.path);
  // HEAD is GET without the body (the HTTP server drops it).
  const std::string method = request.method == "HEAD" ? "GET" : request.method;
  int best = -1;
  for (const auto& r : routes_) {
    if (match(r, segments, nullptr)) best = std::max(best, literal_segments(r));
  }
  std::string allowed;
  for (const auto& r : routes_) {
    if (literal_segments(r) != best || !match(r, segments, nullptr)) continue;
    if (r.method == method) {
      match(r, segments, &request);
      request.route = r.path_template;
      return r.handler(request);
    }
    allowed += (allowed.empty() ? "" : ", ") + r.method + (r.method == "GET" ? ", HEAD" : "");
  }
  if (!allowed.empty()) {
    Response r = problem(405, "", request.method + " is not allowed on " + request.path, "", request.path);
    r.headers["Allow"] = allowed;
    return r;
  }
  return problem(404, "", "no such resource: " + request.path, "", request.path);
}

}  // namespace bitfleet::coordinator
