// Internal (not installed): the forecast behind omni's plans for the next
// interval (omni_planner.h). From the recent windows of a layer it estimates
// each expert's load in the next window, how much that load varies, and a set
// of loads the next window may plausibly have (scenarios), on which the
// search scores placements.
//
// Method (per layer; loads in tokens per window, every window rescaled to the
// newest window's volume, the median over experts of their ratio, so that a
// change of traffic volume is not read as a change of mix, nor one expert's
// swing as a change of volume):
//   1. The windows since the last shift (windows_since_shift): walking back
//      from the newest, a window is kept while its distance to the newest
//      (total variation of the per-layer token shares, mean over layers) is
//      at most kShiftFactor x the median distance between consecutive
//      windows. Older windows describe a workload that has moved on.
//   2. Per expert, its own segment of the kept windows: the windows after
//      its most significant change of level, when the change exceeds kChangeZ
//      standard errors of the noise (the larger of the layer's noise at the
//      expert's level m, phi x m with phi the layer's median variance over
//      mean, 1 for Poisson counts, and the expert's own spread within the two
//      segments) and a straight line over all windows fits worse.
//      A popularity jump is followed at once, where a mean over all windows
//      would lag it.
//   3. Over the m windows of the segment: the mean, and a least-squares
//      trend used only where it is significant (|slope| above kTrendT
//      standard errors, m >= 3); the forecast is the line one window past the
//      newest (clamped at 0), else the mean.
//   4. Residuals r_i (window minus fitted value) give the variation: the
//      forecast's standard deviation is sqrt(sum r_i^2 / (m - p)) x
//      sqrt(1 + 1 / m) (p = 1, or 2 with a trend), and scenario i is the
//      forecast plus r_i scaled so that the scenarios spread as much
//      (clamped at 0). Scenarios keep the correlation between experts within
//      a window (a batch of text that favours some experts favours them
//      together). A segment shorter than kOwnScenarios windows takes the
//      layer's pooled noise sqrt(phi x m) instead, with a fixed sign pattern.
//   5. With fewer than kOwnScenarios windows since the shift (a shift just
//      happened, or few windows were given), the variation is borrowed in
//      relative terms from the windows before the shift (each window's
//      residual over its own regime's fitted value, scaled onto the new
//      forecast): a new mix of text varies about as much as the old one did.
// A single window and nothing before it gives the window itself as the
// forecast and the only scenario: planning for the next interval then
// reduces to fitting the window, priced moves aside.
//
//   auto kept = detail::windows_since_shift(windows);      // indices, ascending
//   detail::LayerForecast f = detail::forecast_layer(windows, kept, l);
//   f.mean[e];          // tokens expert e is expected to receive next window
//   f.scenarios[k][e];  // scenario k
//
// Deterministic; pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "omniplacement/core/ids.h"
#include "omniplacement/core/load_matrix.h"

namespace omni::detail {

// A window further from the newest than this many median steps starts a new
// regime (step 1 above).
inline constexpr double kShiftFactor = 2.5;
// A trend is used when its slope exceeds this many standard errors.
inline constexpr double kTrendT = 2.0;
// Windows since the shift from which the variation is measured on its own;
// with fewer, the relative variation of the regime before is borrowed.
inline constexpr size_t kOwnScenarios = 3;
// An expert's level changed (a popularity jump) when the means before and
// after a window differ by more than this many standard errors of the
// layer's noise.
inline constexpr double kChangeZ = 4.0;

struct LayerForecast {
  std::vector<double> mean;                    // [E] forecast tokens of the next window, >= 0
  std::vector<double> stddev;                  // [E] standard deviation of that forecast, tokens
  std::vector<char> trend;                     // [E] 1 where the forecast follows a significant trend
  std::vector<std::vector<double>> scenarios;  // [K][E] loads the next window may have, >= 0; K = kept windows
};

// Indices into `windows` (oldest first, same shape, at least one) of the
// windows since the last shift, ascending; the newest is always kept.
std::vector<size_t> windows_since_shift(const std::vector<const LoadMatrix*>& windows);

// Forecast of layer l from windows[kept[0]], ..., windows[kept.back()]
// (kept non-empty, ascending). Windows with no tokens in layer l are skipped;
// when none has any, every value is 0 and there is one all-zero scenario.
LayerForecast forecast_layer(const std::vector<const LoadMatrix*>& windows, const std::vector<size_t>& kept,
                             LayerId l);

}  // namespace omni::detail
