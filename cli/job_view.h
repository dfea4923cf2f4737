// How the CLI shows jobs: a job's label, its headline metric, its duration, and aligned text tables.
// Thread-safety: free functions and a value type.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace bitfleet::cli {

bool is_finished(const nlohmann::json& job);  // succeeded, failed or cancelled
// metadata.name, else the id.
std::string job_name(const nlohmann::json& job);
// Why a queued job cannot start (its waiting_reason: no live worker group can run it), else "".
std::string waiting_reason(const nlohmann::json& job);
// The metric a task type is judged by (accuracy; pearson for regression), from the job's metrics.
std::optional<std::pair<std::string, double>> headline_metric(const nlohmann::json& job);
// Seconds from start to finish (or to now while running); nullopt before it starts.
std::optional<double> job_seconds(const nlohmann::json& job);
// "step 120/300" progress as a fraction in [0, 1]; 0 while the total is unknown.
double job_fraction(const nlohmann::json& job);
std::string format_number(double value, int precision = 4);
size_t display_width(std::string_view text);

// Columns padded to their widest cell, two spaces apart.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  size_t size() const { return rows_.size() - 1; }
  void print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace bitfleet::cli
