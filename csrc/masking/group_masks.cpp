#include "masking/group_masks.h"

namespace cxrfast::masking {

void group_masks(uint8_t* masks, int64_t* covered, const double* target, const int64_t* rectangles, uint8_t* done,
                 const GroupMaskShape& s) {
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < s.images; ++b) {
    if (done[b]) continue;
    uint8_t* mask = masks + b * s.height * s.width;
    int64_t count = covered[b];
    for (int64_t k = 0; k < s.rectangles && !done[b]; ++k) {
      const int64_t* r = rectangles + (b * s.rectangles + k) * 4;
      for (int64_t y = r[0]; y < r[0] + r[2]; ++y) {
        uint8_t* row = mask + y * s.width;
        for (int64_t x = r[1]; x < r[1] + r[3]; ++x) {
          count += row[x] ^ 1;  // newly covered
          row[x] = 1;
        }
      }
      if (double(count) >= target[b]) done[b] = 1;
    }
    covered[b] = count;
  }
}

int64_t group_fill(float* out, const float* images, const uint8_t* masks, const int64_t* donor, const float* noise,
                   const int64_t* offset, const int64_t* length, int64_t images_count, int64_t channels,
                   int64_t pixels) {
  int64_t short_of_noise = -1;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < images_count; ++b) {
    const uint8_t* mask = masks + b * pixels;
    for (int64_t c = 0; c < channels; ++c) {
      float* o = out + (b * channels + c) * pixels;
      const float* own = images + (b * channels + c) * pixels;
      if (donor[b] >= 0) {
        const float* source = images + (donor[b] * channels + c) * pixels;
        for (int64_t p = 0; p < pixels; ++p) o[p] = mask[p] ? source[p] : own[p];
        continue;
      }
      const int64_t limit = length[b] / channels;
      const float* values = noise + offset[b] + c * limit;
      int64_t k = 0;
      for (int64_t p = 0; p < pixels; ++p) {
        if (!mask[p]) {
          o[p] = own[p];
        } else if (k < limit) {
          o[p] = values[k++];
        } else {
#pragma omp critical
          short_of_noise = b;
          break;
        }
      }
    }
  }
  return short_of_noise;
}

}  // namespace cxrfast::masking
