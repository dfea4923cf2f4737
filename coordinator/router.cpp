#include "coordinator/router.h"

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
  for (const auto& r : routes_) {
    if (r.method == method && match(r, segments, nullptr)) return r.path_template;
  }
  return "";
}

Response Router::dispatch(Request& request) const {
  auto segments = split_path(request.path);
  std::string allowed;
  for (const auto& r : routes_) {
    if (!match(r, segments, nullptr)) continue;
    if (r.method == request.method) {
      match(r, segments, &request);
      request.route = r.path_template;
      return r.handler(request);
    }
    allowed += (allowed.empty() ? "" : ", ") + r.method;
  }
  if (!allowed.empty()) {
    Response r = problem(405, "", request.method + " is not allowed on " + request.path, "", request.path);
    r.headers["Allow"] = allowed;
    return r;
  }
  return problem(404, "", "no such resource: " + request.path, "", request.path);
}

}  // namespace bitfleet::coordinator
