#include "stats/bootstrap_auroc.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace cxrfast::stats {

void bootstrap_auroc(const uint32_t* random, const int64_t* pool_units, const int64_t* pool_start,
                     const int64_t* pool_column, const int64_t* unit, const int64_t* order, const uint8_t* first,
                     const uint8_t* positive, double* out, const BootstrapShape& s) {
  const int64_t n = s.images, k_models = s.models;
  // Each model's units and classes in its sorted order, so the per-replicate walk reads them in sequence.
  std::vector<int64_t> sorted_unit(size_t(k_models * n));
  std::vector<uint8_t> sorted_case(size_t(k_models * n));
  for (int64_t k = 0; k < k_models; ++k) {
    for (int64_t p = 0; p < n; ++p) {
      const int64_t image = order[k * n + p];
      sorted_unit[size_t(k * n + p)] = unit[image];
      sorted_case[size_t(k * n + p)] = positive[image];
    }
  }
#pragma omp parallel
  {
    std::vector<int32_t> count(size_t(s.units));  // int32: half the cache of int64; a unit is drawn < 2^31 times
#pragma omp for schedule(static)
    for (int64_t b = 0; b < s.replicates; ++b) {
      std::fill(count.begin(), count.end(), 0);
      const uint32_t* row = random + b * s.columns;
      for (int64_t p = 0; p < s.pools; ++p) {
        const int64_t* pool = pool_units + pool_start[p];
        const uint64_t length = uint64_t(pool_start[p + 1] - pool_start[p]);
        const uint32_t* draws = row + pool_column[p];
        for (uint64_t j = 0; j < length; ++j) ++count[size_t(pool[(uint64_t(draws[j]) * length) >> 32])];
      }
      for (int64_t k = 0; k < k_models; ++k) {
        const int64_t* units = sorted_unit.data() + k * n;
        const uint8_t* cases = sorted_case.data() + k * n;
        const uint8_t* starts = first + k * n;
        // twice the Mann-Whitney count: each case outscores the controls below its block, ties 1/2
        int64_t wins2 = 0, controls_below = 0, cases_total = 0, cases_in = 0, controls_in = 0;
        for (int64_t p = 0; p < n; ++p) {
          if (starts[p]) {
            wins2 += cases_in * (2 * controls_below + controls_in);
            controls_below += controls_in;
            cases_total += cases_in;
            cases_in = controls_in = 0;
          }
          const int64_t w = count[size_t(units[p])];
          if (cases[p]) cases_in += w; else controls_in += w;
        }
        wins2 += cases_in * (2 * controls_below + controls_in);
        controls_below += controls_in;
        cases_total += cases_in;
        out[b * k_models + k] = cases_total && controls_below
                                    ? double(wins2) / (2.0 * double(cases_total) * double(controls_below))
                                    : std::nan("");
      }
    }
  }
}

}  // namespace cxrfast::stats
