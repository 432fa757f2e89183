// Forecast of each expert's load in the next window (see load_forecast.h).
#include "load_forecast.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <cstdlib>

namespace omni::detail {

namespace {

// Mean over layers of the total variation distance between the per-layer
// token shares of two windows (0: same mix, 1: disjoint experts). Layers
// without tokens in either window are left out.
double mix_distance(const LoadMatrix& a, const LoadMatrix& b) {
  double sum = 0;
  int32_t layers = 0;
  for (LayerId l = 0; l < a.num_layers(); ++l) {
    const double ta = a.layer_total(l), tb = b.layer_total(l);
    if (ta <= 0 || tb <= 0) continue;
    const auto ra = a.row(l), rb = b.row(l);
    double d = 0;
    for (size_t e = 0; e < ra.size(); ++e) d += std::abs(ra[e] / ta - rb[e] / tb);
    sum += 0.5 * d;
    ++layers;
  }
  return layers > 0 ? sum / layers : 0.0;
}

}  // namespace

std::vector<size_t> windows_since_shift(const std::vector<const LoadMatrix*>& windows) {
  const size_t n = windows.size();
  std::vector<size_t> kept;
  if (n < 3) {
    for (size_t i = 0; i < n; ++i) kept.push_back(i);
    return kept;
  }
  std::vector<double> steps;
  for (size_t i = 1; i < n; ++i) steps.push_back(mix_distance(*windows[i - 1], *windows[i]));
  std::vector<double> sorted = steps;
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
  const double noise = sorted[sorted.size() / 2];
  const LoadMatrix& newest = *windows[n - 1];
  size_t first = n - 1;
  while (first > 0 && mix_distance(*windows[first - 1], newest) <= kShiftFactor * noise) --first;
  for (size_t i = first; i < n; ++i) kept.push_back(i);
  return kept;
}

namespace {

// One regime's windows (loads [n][E], oldest first, n >= 1): per expert the
// forecast one window past the newest, the fitted value of every window, the
// residuals and the spread of a new window around the forecast.
struct RegimeFit {
  std::vector<double> next;                  // [E]
  std::vector<char> trend;                   // [E]
  std::vector<int32_t> since;                // [E] first window of the expert's own segment
  std::vector<double> stddev;                // [E] of a new window around `next` (0 when n = 1)
  std::vector<std::vector<double>> fitted;   // [n][E]
  std::vector<std::vector<double>> resid;    // [n][E]; windows before `since` and segments too short: pooled noise
};

// Overdispersion of the layer: median over experts with load of the variance
// of their windows over their mean (1 for Poisson counts). 1 with one window.
double overdispersion(const std::vector<std::vector<double>>& y) {
  const size_t n = y.size(), En = y[0].size();
  if (n < 2) return 1.0;
  std::vector<double> ratio;
  for (size_t e = 0; e < En; ++e) {
    double m = 0;
    for (size_t i = 0; i < n; ++i) m += y[i][e];
    m /= static_cast<double>(n);
    if (m <= 0) continue;
    double v = 0;
    for (size_t i = 0; i < n; ++i) v += (y[i][e] - m) * (y[i][e] - m);
    ratio.push_back(v / static_cast<double>(n - 1) / m);
  }
  if (ratio.empty()) return 1.0;
  std::nth_element(ratio.begin(), ratio.begin() + static_cast<std::ptrdiff_t>(ratio.size() / 2), ratio.end());
  return std::max(1e-6, ratio[ratio.size() / 2]);
}

// A deterministic sign per (window, expert), for pooled-noise residuals.
double noise_sign(size_t i, size_t e) {
  uint64_t h = (static_cast<uint64_t>(i) << 32) ^ static_cast<uint64_t>(e) ^ 0x9E3779B97F4A7C15ULL;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDULL;
  h ^= h >> 33;
  return (h & 1) != 0 ? 1.0 : -1.0;
}

RegimeFit fit_regime(const std::vector<std::vector<double>>& y) {
  const size_t n = y.size(), En = y[0].size();
  RegimeFit r;
  r.next.assign(En, 0.0);
  r.trend.assign(En, 0);
  r.since.assign(En, 0);
  r.stddev.assign(En, 0.0);
  r.fitted.assign(n, std::vector<double>(En, 0.0));
  r.resid.assign(n, std::vector<double>(En, 0.0));
  if (n == 1) {
    r.next = y[0];
    r.fitted[0] = y[0];
    return r;
  }
  const double phi = overdispersion(y);
  for (size_t e = 0; e < En; ++e) {
    // The expert's own segment: after its most significant change of level
    // (a popularity jump), if one stands out of the layer's noise and a
    // straight line over all the windows does not fit them as well.
    size_t from = 0;
    double best_z = kChangeZ, step_ss = 0;
    for (size_t j = 1; j < n; ++j) {
      double m1 = 0, m2 = 0;
      for (size_t i = 0; i < j; ++i) m1 += y[i][e];
      for (size_t i = j; i < n; ++i) m2 += y[i][e];
      m1 /= static_cast<double>(j);
      m2 /= static_cast<double>(n - j);
      // The noise: the layer's at this level, or the expert's own spread
      // within the two segments when that is larger (a volatile expert swings
      // without jumping).
      double within = 0;
      for (size_t i = 0; i < j; ++i) within += (y[i][e] - m1) * (y[i][e] - m1);
      for (size_t i = j; i < n; ++i) within += (y[i][e] - m2) * (y[i][e] - m2);
      within = n > 2 ? within / static_cast<double>(n - 2) : 0.0;
      const double var = std::max(phi * std::max(1.0, 0.5 * (m1 + m2)), within);
      const double se = std::sqrt(var * (1.0 / static_cast<double>(j) + 1.0 / static_cast<double>(n - j)));
      const double z = std::abs(m2 - m1) / se;
      if (z > best_z) {
        best_z = z;
        from = j;
        step_ss = 0;
        for (size_t i = 0; i < j; ++i) step_ss += (y[i][e] - m1) * (y[i][e] - m1);
        for (size_t i = j; i < n; ++i) step_ss += (y[i][e] - m2) * (y[i][e] - m2);
      }
    }
    if (from > 0 && n >= 3) {
      double mean = 0, sty = 0, stt = 0;
      for (size_t i = 0; i < n; ++i) mean += y[i][e];
      mean /= static_cast<double>(n);
      for (size_t i = 0; i < n; ++i) {
        const double t = static_cast<double>(i) - 0.5 * static_cast<double>(n - 1);
        sty += t * y[i][e];
        stt += t * t;
      }
      double line_ss = 0;
      for (size_t i = 0; i < n; ++i) {
        const double d = y[i][e] - mean - sty / stt * (static_cast<double>(i) - 0.5 * static_cast<double>(n - 1));
        line_ss += d * d;
      }
      if (line_ss <= step_ss) from = 0;  // a trend, not a jump
    }
    r.since[e] = static_cast<int32_t>(from);
    const size_t m = n - from;
    // Level and trend on the segment (centred positions; the next window is at (m + 1) / 2).
    double mean = 0, sty = 0, stt = 0;
    for (size_t i = from; i < n; ++i) mean += y[i][e];
    mean /= static_cast<double>(m);
    for (size_t i = from; i < n; ++i) {
      const double t = static_cast<double>(i - from) - 0.5 * static_cast<double>(m - 1);
      sty += t * y[i][e];
      stt += t * t;
    }
    const double slope = stt > 0 ? sty / stt : 0.0;
    double flat_ss = 0, trend_ss = 0;
    for (size_t i = from; i < n; ++i) {
      const double t = static_cast<double>(i - from) - 0.5 * static_cast<double>(m - 1);
      const double a = y[i][e] - mean, b = a - slope * t;
      flat_ss += a * a;
      trend_ss += b * b;
    }
    bool use_trend = false;
    if (m >= 3) {
      const double se = std::sqrt(trend_ss / static_cast<double>(m - 2) / stt);
      use_trend = std::abs(slope) > kTrendT * se && slope != 0;
    }
    r.trend[e] = use_trend ? 1 : 0;
    r.next[e] = std::max(0.0, use_trend ? mean + slope * 0.5 * static_cast<double>(m + 1) : mean);
    const double pooled = std::sqrt(phi * std::max(1.0, r.next[e]));
    if (m >= kOwnScenarios) {
      const double dof = static_cast<double>(m) - (use_trend ? 2.0 : 1.0);
      r.stddev[e] = std::sqrt((use_trend ? trend_ss : flat_ss) / dof * (1.0 + 1.0 / static_cast<double>(m)));
    } else {
      r.stddev[e] = pooled * std::sqrt(1.0 + 1.0 / static_cast<double>(m));
    }
    for (size_t i = 0; i < n; ++i) {
      const double t = static_cast<double>(i) - static_cast<double>(from) - 0.5 * static_cast<double>(m - 1);
      r.fitted[i][e] = i >= from ? mean + (use_trend ? slope * t : 0.0) : r.next[e];
      // Residuals of the segment when it is long enough to show the variation,
      // else the layer's pooled noise at the expert's level.
      r.resid[i][e] = i >= from && m >= kOwnScenarios ? y[i][e] - r.fitted[i][e] : noise_sign(i, e) * pooled;
    }
  }
  return r;
}

// The windows of `idx` with tokens in layer l, each rescaled to `scale_total`.
std::vector<std::vector<double>> rescaled(const std::vector<const LoadMatrix*>& windows, const std::vector<size_t>& idx,
                                          LayerId l, std::span<const double> reference) {
  double ref_total = 0;
  for (double v : reference) ref_total += v;
  std::vector<std::vector<double>> y;
  std::vector<double> ratios;
  for (size_t i : idx) {
    const double total = windows[i]->layer_total(l);
    if (total <= 0) continue;
    const auto row = windows[i]->row(l);
    // The window's volume against the reference: the median over experts of
    // their ratio, so that one expert's swing is not read as a change of
    // volume for all (the ratio of totals when fewer than 3 experts have load in both).
    ratios.clear();
    for (size_t e = 0; e < row.size(); ++e)
      if (row[e] > 0 && reference[e] > 0) ratios.push_back(reference[e] / row[e]);
    double factor = ref_total / total;
    if (ratios.size() >= 3) {
      std::nth_element(ratios.begin(), ratios.begin() + static_cast<std::ptrdiff_t>(ratios.size() / 2), ratios.end());
      factor = ratios[ratios.size() / 2];
    }
    std::vector<double> v(row.size());
    for (size_t e = 0; e < row.size(); ++e) v[e] = row[e] * factor;
    y.push_back(std::move(v));
  }
  return y;
}

}  // namespace

LayerForecast forecast_layer(const std::vector<const LoadMatrix*>& windows, const std::vector<size_t>& kept,
                             LayerId l) {
  const int32_t E = windows[kept.front()]->num_experts();
  const auto En = static_cast<size_t>(E);
  LayerForecast f;
  f.mean.assign(En, 0.0);
  f.stddev.assign(En, 0.0);
  f.trend.assign(En, 0);
  std::span<const double> reference;
  for (size_t i : kept)
    if (windows[i]->layer_total(l) > 0) reference = windows[i]->row(l);
  const std::vector<std::vector<double>> y = !reference.empty() ? rescaled(windows, kept, l, reference)
                                                                 : std::vector<std::vector<double>>{};
  if (y.empty()) {
    f.scenarios.assign(1, std::vector<double>(En, 0.0));
    return f;
  }
  const RegimeFit cur = fit_regime(y);
  f.mean = cur.next;
  f.trend = cur.trend;
  const size_t n = y.size();
  if (n >= kOwnScenarios) {
    // Residuals spread with denominator n; the forecast's spread has n - p and
    // the 1 + 1/n of a new observation: scale per expert so that they agree.
    f.stddev = cur.stddev;
    f.scenarios.assign(n, std::vector<double>(En, 0.0));
    for (size_t e = 0; e < En; ++e) {
      double raw = 0;
      for (size_t i = 0; i < n; ++i) raw += cur.resid[i][e] * cur.resid[i][e];
      raw = std::sqrt(raw / static_cast<double>(n));
      const double k = raw > 0 ? f.stddev[e] / raw : 0.0;
      for (size_t i = 0; i < n; ++i) f.scenarios[i][e] = std::max(0.0, f.mean[e] + k * cur.resid[i][e]);
    }
    return f;
  }
  // Too few windows since the shift to measure the variation: take it, in
  // relative terms, from the regime before (each window's residual over its
  // fitted value), together with the new regime's own windows.
  std::vector<size_t> before;
  for (size_t i = 0; i < kept.front(); ++i) before.push_back(i);
  std::vector<std::vector<double>> rel;  // relative residuals, one row per window
  std::vector<double> inflate;           // per row: sqrt((m + 1) / (m - 1)) of its regime of m windows
  auto add_regime = [&](const RegimeFit& fit, size_t m) {
    if (m < 2) return;
    for (size_t i = 0; i < m; ++i) {
      std::vector<double> r(En, 0.0);
      for (size_t e = 0; e < En; ++e)
        if (fit.fitted[i][e] > 0) r[e] = fit.resid[i][e] / fit.fitted[i][e];
      rel.push_back(std::move(r));
      inflate.push_back(std::sqrt(static_cast<double>(m + 1) / static_cast<double>(m - 1)));
    }
  };
  const std::vector<std::vector<double>> old = rescaled(windows, before, l, reference);
  if (old.size() >= 2) add_regime(fit_regime(old), old.size());
  add_regime(cur, n);
  if (rel.empty()) {
    f.scenarios.push_back(f.mean);
    return f;
  }
  f.scenarios.assign(rel.size(), std::vector<double>(En, 0.0));
  for (size_t e = 0; e < En; ++e) {
    double ss = 0;
    for (size_t i = 0; i < rel.size(); ++i) {
      const double r = inflate[i] * rel[i][e];
      f.scenarios[i][e] = std::max(0.0, f.mean[e] * (1.0 + r));
      ss += r * r;
    }
    f.stddev[e] = f.mean[e] * std::sqrt(ss / static_cast<double>(rel.size()));
  }
  return f;
}

}  // namespace omni::detail
