#include "cli/job_view.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace bitfleet::cli {

using nlohmann::json;

bool is_finished(const json& job) {
  const std::string status = job.value("status", "");
  return status == "succeeded" || status == "failed" || status == "cancelled";
}

std::string job_name(const json& job) {
  const json& metadata = job.value("metadata", json::object());
  if (metadata.is_object() && metadata.contains("name") && metadata["name"].is_string()) {
    return metadata["name"].get<std::string>();
  }
  return job.value("id", "");
}

std::string waiting_reason(const json& job) {
  if (job.value("status", "") != "queued") return "";
  const json& reason = job.value("waiting_reason", json());
  return reason.is_string() ? reason.get<std::string>() : "";
}

std::optional<std::pair<std::string, double>> headline_metric(const json& job) {
  const json& metrics = job.value("metrics", json());
  if (!metrics.is_object() || metrics.empty()) return std::nullopt;
  for (const char* name : {"accuracy", "pearson"}) {
    if (metrics.contains(name) && metrics[name].is_number()) return std::make_pair(name, metrics[name].get<double>());
  }
  for (const auto& [name, value] : metrics.items()) {
    if (value.is_number()) return std::make_pair(name, value.get<double>());
  }
  return std::nullopt;
}

std::optional<double> job_seconds(const json& job) {
  const json& started = job.value("started_at", json());
  if (!started.is_number()) return std::nullopt;
  const json& finished = job.value("finished_at", json());
  const double end = finished.is_number()
                         ? finished.get<double>()
                         : std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return std::max(0.0, end - started.get<double>());
}

double job_fraction(const json& job) {
  if (job.value("status", "") == "succeeded") return 1.0;
  const json& progress = job.value("progress", json::object());
  const json& total = progress.value("total_steps", json());
  if (!total.is_number() || total.get<double>() <= 0) return 0.0;
  return std::clamp(progress.value("step", 0.0) / total.get<double>(), 0.0, 1.0);
}

std::string format_number(double value, int precision) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", precision, value);
  return text;
}

size_t display_width(std::string_view text) {
  // Code points, not bytes: names may be any UTF-8 (wide CJK glyphs still count one).
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

void TextTable::print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], display_width(row[c]));
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - display_width(row[c]) + 2, ' ');
    }
    out << line << "\n";
  }
}

}  // namespace bitfleet::cli
