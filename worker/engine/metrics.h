// GLUE metrics for a task's validation predictions.
//   classification: accuracy, f1 (binary: of label 1; more labels: macro average), mcc (Matthews
//                   correlation, the multi-class form), and loss
//   regression:     pearson, spearman (average ranks for ties), mse
//   token:          accuracy over labelled tokens
// Every job reports all that fit its task; the first is its primary metric.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace bitfleet::engine {

using Metrics = std::vector<std::pair<std::string, double>>;  // in order, primary first

Metrics classification_metrics(const std::vector<int64_t>& predicted, const std::vector<int64_t>& gold,
                               int64_t num_labels);
Metrics regression_metrics(const std::vector<double>& predicted, const std::vector<double>& gold);
Metrics token_metrics(const std::vector<int64_t>& predicted, const std::vector<int64_t>& gold);

double pearson(const std::vector<double>& x, const std::vector<double>& y);
double spearman(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace bitfleet::engine
