// AUROC of every bootstrap replicate from one sort per model: a replicate is a multiset of
// units (images, or patients and all their images), so it only reweights the images; walking
// each model's sorted scores once with those weights gives the Mann-Whitney count exactly, in
// integers (ties 1/2, kept as doubled counts), without sorting the replicate again.
#pragma once

#include <cstdint>

namespace cxrfast::stats {

struct BootstrapShape {
  int64_t replicates;  // B
  int64_t draws;       // M units drawn per replicate
  int64_t images;      // N
  int64_t units;       // U
  int64_t models;      // K
};

// draws (B, M): unit indices in [0, U); unit (N,): each image's unit in [0, U);
// order (K, N): each model's images by ascending score; first (K, N): 1 where a block of tied
// scores starts in that order; positive (N,): 1 for a case. out (B, K): AUROC, NaN when the
// replicate holds no case or no control. Indices are checked by the caller.
void bootstrap_auroc(const int64_t* draws, const int64_t* unit, const int64_t* order, const uint8_t* first,
                     const uint8_t* positive, double* out, const BootstrapShape& s);

}  // namespace cxrfast::stats
