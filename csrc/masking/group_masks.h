// GMML's group masks, one round of rectangles at a time (python/cxrfast/nn/group_masking.py is
// the definition): every image not yet done paints its round's rectangles in order, counting the
// pixels each newly covers, and stops at the first rectangle whose union reaches its target.
#pragma once

#include <cstdint>

namespace cxrfast::masking {

struct GroupMaskShape {
  int64_t images;      // B
  int64_t rectangles;  // K: this round's per image
  int64_t height;      // H
  int64_t width;       // W
};

// masks (B, H * W) 0/1; covered (B,): pixels each mask covers; target (B,): pixels to reach;
// rectangles (B, K, 4): top, left, height, width, each inside the image (checked by the caller);
// done (B,): 1 for an image that has reached its target (left alone; set here when one does).
void group_masks(uint8_t* masks, int64_t* covered, const double* target, const int64_t* rectangles, uint8_t* done,
                 const GroupMaskShape& s);

// GMML's fill: out (B, C, P) takes the images (B, C, P), except where masks (B, P) is 1: there
// image b takes donor[b]'s pixels if donor[b] >= 0 (checked < B by the caller), else the next
// values of noise from offset[b] on, at most length[b] of them. One pass; out must not alias the
// images. Returns the first image whose mask needed more noise than that, or -1.
int64_t group_fill(float* out, const float* images, const uint8_t* masks, const int64_t* donor, const float* noise,
                   const int64_t* offset, const int64_t* length, int64_t images_count, int64_t channels,
                   int64_t pixels);

}  // namespace cxrfast::masking
