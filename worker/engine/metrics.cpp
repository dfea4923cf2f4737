#include "worker/engine/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace bitfleet::engine {
namespace {

std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> ranks(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    double rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) ranks[idx[k]] = rank;
    i = j + 1;
  }
  return ranks;
}

}  // namespace

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  if (x.size() < 2) return 0.0;
  double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  return pearson(average_ranks(x), average_ranks(y));
}

Metrics classification_metrics(const std::vector<int64_t>& predicted, const std::vector<int64_t>& gold,
                               int64_t num_labels) {
  const size_t n = gold.size();
  std::vector<std::vector<double>> confusion(num_labels, std::vector<double>(num_labels, 0));  // [gold][pred]
  size_t correct = 0;
  for (size_t i = 0; i < n; ++i) {
    confusion[gold[i]][predicted[i]] += 1;
    correct += predicted[i] == gold[i];
  }
  auto f1_of = [&](int64_t c) {
    double tp = confusion[c][c], fp = 0, fn = 0;
    for (int64_t k = 0; k < num_labels; ++k) {
      if (k == c) continue;
      fp += confusion[k][c];
      fn += confusion[c][k];
    }
    return tp == 0 ? 0.0 : 2 * tp / (2 * tp + fp + fn);
  };
  double f1 = 0;
  if (num_labels == 2) {
    f1 = f1_of(1);
  } else {
    for (int64_t c = 0; c < num_labels; ++c) f1 += f1_of(c);
    f1 /= static_cast<double>(num_labels);
  }
  // Matthews correlation, multi-class (Gorodkin): (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)).
  double s = static_cast<double>(n), c = static_cast<double>(correct), pp = 0, tt = 0, pt = 0;
  for (int64_t k = 0; k < num_labels; ++k) {
    double p_k = 0, t_k = 0;
    for (int64_t j = 0; j < num_labels; ++j) {
      p_k += confusion[j][k];
      t_k += confusion[k][j];
    }
    pp += p_k * p_k;
    tt += t_k * t_k;
    pt += p_k * t_k;
  }
  double denom = std::sqrt((s * s - pp) * (s * s - tt));
  double mcc = denom > 0 ? (c * s - pt) / denom : 0.0;
  return {{"accuracy", n ? c / s : 0.0}, {"f1", f1}, {"mcc", mcc}};
}

Metrics regression_metrics(const std::vector<double>& predicted, const std::vector<double>& gold) {
  double mse = 0;
  for (size_t i = 0; i < gold.size(); ++i) mse += (predicted[i] - gold[i]) * (predicted[i] - gold[i]);
  mse = gold.empty() ? 0.0 : mse / static_cast<double>(gold.size());
  return {{"pearson", pearson(predicted, gold)}, {"spearman", spearman(predicted, gold)}, {"mse", mse}};
}

Metrics token_metrics(const std::vector<int64_t>& predicted, const std::vector<int64_t>& gold) {
  size_t correct = 0;
  for (size_t i = 0; i < gold.size(); ++i) correct += predicted[i] == gold[i];
  return {{"accuracy", gold.empty() ? 0.0 : static_cast<double>(correct) / static_cast<double>(gold.size())}};
}

}  // namespace bitfleet::engine
