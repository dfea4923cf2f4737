// Router: maps "METHOD /path/{param}" templates to handlers. A path that matches a template
// under another method is a 405 with Allow; one that matches none is a 404. Where templates
// overlap, the one with more literal segments wins; HEAD is served by the GET route.
// Thread-safety: routes are added before serving; match() is then read-only.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/net/http_types.h"

namespace bitfleet::coordinator {

using net::Request;
using net::Response;
using Handler = std::function<Response(Request&)>;

class Router {
 public:
  void add(const std::string& method, const std::string& path_template, Handler handler);
  // Fills request.params and request.route; runs the handler, or answers 404/405.
  Response dispatch(Request& request) const;
  // The route template a request would match ("" when none), for metrics labels.
  std::string route_of(const std::string& method, const std::string& path) const;

 private:
  struct Route {
    std::string method;
    std::string path_template;
    std::vector<std::string> segments;
    Handler handler;
  };
  static bool match(const Route& route, const std::vector<std::string>& segments, Request* request);
  static int literal_segments(const Route& route);

  std::vector<Route> routes_;
};

std::vector<std::string> split_path(const std::string& path);

}  // namespace bitfleet::coordinator
