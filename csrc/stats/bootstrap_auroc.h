// AUROC of every bootstrap replicate from one sort per model: a replicate is a multiset of
// units (images, or patients and all their images), so it only reweights the images; walking
// each model's sorted scores once with those weights gives the Mann-Whitney count exactly, in
// integers (ties 1/2, kept as doubled counts), without sorting the replicate again.
//
// Replicates are read from one matrix of uniform 32-bit draws: replicate b takes, for each pool
// p (a list of units), pool length draws from columns column[p].. of row b, draw r picking
// pool[(r * length) >> 32] (Lemire's multiply-shift). Stratified replicates are two pools (the
// cases', the controls'); plain ones one pool of every unit.
#pragma once

#include <cstdint>

namespace cxrfast::stats {

struct BootstrapShape {
  int64_t replicates;  // B: rows of random
  int64_t columns;     // columns of random
  int64_t pools;       // P
  int64_t images;      // N
  int64_t units;       // U
  int64_t models;      // K
};

// random (B, columns) uint32; pool_units: the pools' units concatenated, pool p being
// pool_units[pool_start[p] .. pool_start[p + 1]) and reading columns pool_column[p] onwards;
// unit (N,): each image's unit; order (K, N): each model's images by ascending score; first
// (K, N): 1 where a block of tied scores starts in that order; positive (N,): 1 for a case.
// out (B, K): AUROC, NaN when the replicate holds no case or no control. Every index is checked
// by the caller.
void bootstrap_auroc(const uint32_t* random, const int64_t* pool_units, const int64_t* pool_start,
                     const int64_t* pool_column, const int64_t* unit, const int64_t* order, const uint8_t* first,
                     const uint8_t* positive, double* out, const BootstrapShape& s);

}  // namespace cxrfast::stats
