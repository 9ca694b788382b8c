// The CUDA Sinkhorn kernels, emulated on the CPU, against a double-precision reference: the three
// Sinkhorn passes over every split of their reduced axis, the log-sum-exps, the code dots and the
// gradient, on float32, float16 and bfloat16 scores. Each bound is float32's rounding (u = 2^-24)
// times what the value is made of: the exponents' size (their float32 rounding is amplified by 1/ε
// or 1/τ), the number of terms, and for the half gradients the output's own rounding.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "sinkhorn.h"  // kernels/cuda, on the include path

namespace k = cxrfast::cuda;

static int failures = 0, checks = 0;
static double worst = 0;  // the largest error as a share of its bound, and where
static char worst_at[160];
constexpr double kU = 1.0 / (1 << 24);
constexpr float kExpFloor = -87.0f;

static void expect(const char* what, double got, double ref, double bound, const char* tag) {
  ++checks;
  const double share = std::fabs(got - ref) / (bound + 1e-300);
  if (share > worst) {
    worst = share;
    std::snprintf(worst_at, sizeof worst_at, "%s %s", what, tag);
  }
  if (!(std::isfinite(got) && share <= 1) && failures++ < 20)
    std::printf("FAIL %s %s: got %.9g ref %.9g (bound %.3g)\n", tag, what, got, ref, bound);
}

// Scores (or a gradient) in one of the kernels' dtypes, as raw bytes.
struct Typed {
  int dtype;
  std::vector<unsigned char> bytes;
  Typed(int dtype_, size_t count) : dtype(dtype_), bytes(count * (dtype_ == k::kFloat32 ? 4 : 2)) {}
  float get(size_t i) const {
    if (dtype == k::kFloat32) {
      float f;
      std::memcpy(&f, &bytes[4 * i], 4);
      return f;
    }
    uint16_t bits;
    std::memcpy(&bits, &bytes[2 * i], 2);
    return dtype == k::kFloat16 ? __half2float(__half{bits}) : __bfloat162float(__nv_bfloat16{bits});
  }
  void put(size_t i, float x) {
    if (dtype == k::kFloat32) {
      std::memcpy(&bytes[4 * i], &x, 4);
      return;
    }
    const uint16_t bits = dtype == k::kFloat16 ? __float2half_rn(x).bits : __float2bfloat16_rn(x).bits;
    std::memcpy(&bytes[2 * i], &bits, 2);
  }
  void* data() { return bytes.data(); }
};

static std::mt19937 rng(1);

// Normal scores times `spread`, rounded to the dtype; values[] holds what the kernels read.
static Typed random_scores(int dtype, size_t count, float spread, std::vector<double>& values) {
  std::normal_distribution<float> normal;
  Typed s(dtype, count);
  values.resize(count);
  for (size_t i = 0; i < count; ++i) {
    s.put(i, spread * normal(rng));
    values[i] = s.get(i);
  }
  return s;
}

static std::vector<float> uniform(size_t count, float low, float high) {
  std::uniform_real_distribution<float> u(low, high);
  std::vector<float> v(count);
  for (auto& x : v) x = u(rng);
  return v;
}

static double exponential(double shifted, double sample_shift, double inv_epsilon) {
  return std::exp(std::max((shifted - sample_shift) * inv_epsilon, double(kExpFloor)));
}

// Each prototype's largest score over rows [first, first + count) of an (any, kk) array, as float32.
static std::vector<float> column_max(const std::vector<double>& v, int64_t first, int64_t count, int64_t kk) {
  std::vector<float> shift(kk, -INFINITY);
  for (int64_t i = first; i < first + count; ++i)
    for (int64_t j = 0; j < kk; ++j) shift[j] = std::max(shift[j], float(v[i * kk + j]));
  return shift;
}

// Each row's largest score less its prototype's shift, over rows [first, first + count), as float32.
static std::vector<float> row_shift(const std::vector<double>& v, int64_t first, int64_t count, int64_t kk,
                                    const std::vector<float>& shift) {
  std::vector<float> out(count);
  for (int64_t i = 0; i < count; ++i) {
    double top = -INFINITY;
    for (int64_t j = 0; j < kk; ++j) top = std::max(top, v[(first + i) * kk + j] - shift[j]);
    out[i] = float(top);
  }
  return out;
}

// The relative error of a float32 e_nk, whose exponent is rounded at three steps (two
// subtractions and the scaling by 1/ε), plus expf's own.
static double exponential_tolerance(const std::vector<double>& v, int64_t first, int64_t count, int64_t kk,
                                    const std::vector<float>& shift, const std::vector<float>& sample_shift,
                                    double inv_epsilon) {
  double size = 0;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t j = 0; j < kk; ++j)
      size = std::max(size, std::fabs(v[(first + i) * kk + j] - shift[j]) + std::fabs(sample_shift[i]));
  return kU * (3 * size * inv_epsilon + 8);
}

// The splits of a reduced axis of `length` entries to test: one piece, three, and one per entry
// where that is few.
static std::vector<int64_t> splits(int64_t length) {
  std::vector<int64_t> out = {1};
  if (length >= 3) out.push_back(3);
  if (length > 3 && length <= 9) out.push_back(length);
  return out;
}

static void check_passes(int dtype, int64_t n, int64_t kk, float spread) {
  char tag[120];
  std::snprintf(tag, sizeof tag, "[passes dtype=%d n=%ld k=%ld spread=%g]", dtype, long(n), long(kk), spread);
  const double inv_epsilon = 20;
  std::vector<double> v;
  Typed s = random_scores(dtype, n * kk, spread, v);
  const std::vector<float> shift = n ? column_max(v, 0, n, kk) : std::vector<float>(kk, 0.0f);
  const std::vector<float> rows = uniform(kk, 0.5f, 2.0f), columns = uniform(n, 0.5f, 2.0f);
  const std::vector<float> own = row_shift(v, 0, n, kk, shift);
  const double tol = exponential_tolerance(v, 0, n, kk, shift, own, inv_epsilon);
  // sample_shift and sample_totals split the prototypes, prototype_totals the samples.
  for (int64_t chunks : splits(kk)) {
    std::vector<float> partial(chunks * n, NAN);
    if (k::sinkhorn_sample_shift(s.data(), dtype, shift.data(), partial.data(), n, kk, chunks, nullptr) != 0)
      std::printf("FAIL status %s\n", tag);
    for (int64_t i = 0; i < n; ++i) {
      float got = -INFINITY;
      for (int64_t c = 0; c < chunks; ++c) got = std::max(got, partial[c * n + i]);
      expect("sample_shift", got, own[i], kU * (std::fabs(own[i]) + 1), tag);
    }
    partial.assign(chunks * n, NAN);
    if (k::sinkhorn_sample_totals(s.data(), dtype, shift.data(), own.data(), rows.data(), float(inv_epsilon),
                                  partial.data(), n, kk, chunks, nullptr) != 0)
      std::printf("FAIL status %s\n", tag);
    for (int64_t i = 0; i < n; ++i) {
      double got = 0, want = 0;
      for (int64_t c = 0; c < chunks; ++c) got += partial[c * n + i];
      for (int64_t j = 0; j < kk; ++j) want += exponential(v[i * kk + j] - shift[j], own[i], inv_epsilon) * rows[j];
      // Positive terms: their sum is their magnitude.
      expect("sample_totals", got, want, (tol + kU * (kk / 32.0 + 8)) * want, tag);
    }
  }
  for (int64_t chunks : splits(std::max<int64_t>(n, 1))) {
    std::vector<float> partial(chunks * kk, NAN);
    if (k::sinkhorn_prototype_totals(s.data(), dtype, shift.data(), own.data(), columns.data(), float(inv_epsilon),
                                     partial.data(), n, kk, chunks, nullptr) != 0)
      std::printf("FAIL status %s\n", tag);
    for (int64_t j = 0; j < kk; ++j) {
      double got = 0, want = 0;
      for (int64_t c = 0; c < chunks; ++c) got += partial[c * kk + j];
      for (int64_t i = 0; i < n; ++i) want += exponential(v[i * kk + j] - shift[j], own[i], inv_epsilon) * columns[i];
      expect("prototype_totals", got, want, (tol + kU * (n / 8.0 + 8)) * want, tag);
    }
  }
}

static void check_loss(int dtype, int64_t crops, int64_t batch, int64_t kk, std::vector<int64_t> assign) {
  char tag[120];
  std::snprintf(tag, sizeof tag, "[loss dtype=%d V=%ld B=%ld K=%ld A=%zu]", dtype, long(crops), long(batch), long(kk),
                assign.size());
  const double inv_temperature = 10, inv_epsilon = 20;
  const int64_t rows_total = crops * batch, code_crops = int64_t(assign.size());
  std::vector<double> v;
  Typed s = random_scores(dtype, rows_total * kk, 0.4f, v);
  // Log-sum-exps, each bounded by the rounding of its largest |s / τ| and its terms' count.
  std::vector<float> lse(rows_total, NAN);
  if (k::swapped_log_sum_exps(s.data(), dtype, lse.data(), crops, batch, kk, float(inv_temperature), nullptr) != 0)
    std::printf("FAIL status %s\n", tag);
  std::vector<double> lse_ref(rows_total);
  double largest = 0;
  for (int64_t r = 0; r < rows_total; ++r) {
    double top = -INFINITY, total = 0;
    for (int64_t j = 0; j < kk; ++j) top = std::max(top, v[r * kk + j] * inv_temperature);
    for (int64_t j = 0; j < kk; ++j) total += std::exp(v[r * kk + j] * inv_temperature - top);
    lse_ref[r] = top + std::log(total);
    largest = std::max({largest, std::fabs(top), std::fabs(lse_ref[r])});
    expect("lse", lse[r], lse_ref[r], kU * (2 * largest + 8 + kk / 32.0), tag);
  }
  // Each code crop's scales: the shifts of its rows, random positive rows and columns.
  std::vector<float> shifts, sample_shifts, rows, columns;
  double tol_codes = 0;
  for (int64_t i : assign) {
    const std::vector<float> shift = column_max(v, i * batch, batch, kk);
    const std::vector<float> own = row_shift(v, i * batch, batch, kk, shift);
    tol_codes = std::max(tol_codes, exponential_tolerance(v, i * batch, batch, kk, shift, own, inv_epsilon));
    const std::vector<float> r = uniform(kk, 0.5f / kk, 2.0f / kk), c = uniform(batch, 0.5f, 2.0f);
    shifts.insert(shifts.end(), shift.begin(), shift.end());
    sample_shifts.insert(sample_shifts.end(), own.begin(), own.end());
    rows.insert(rows.end(), r.begin(), r.end());
    columns.insert(columns.end(), c.begin(), c.end());
  }
  auto code = [&](int64_t a, int64_t b, int64_t j) {
    return exponential(v[(assign[a] * batch + b) * kk + j] - shifts[a * kk + j], sample_shifts[a * batch + b],
                       inv_epsilon) *
           rows[a * kk + j] * columns[a * batch + b];
  };
  // Code dots, crop by crop.
  for (int64_t a = 0; a < code_crops; ++a) {
    std::vector<float> dots(rows_total, NAN);
    if (k::swapped_code_dots(s.data(), dtype, assign[a], &shifts[a * kk], &sample_shifts[a * batch], &rows[a * kk],
                             &columns[a * batch], float(inv_epsilon), dots.data(), crops, batch, kk, nullptr) != 0)
      std::printf("FAIL status %s\n", tag);
    for (int64_t r = 0; r < rows_total; ++r) {
      double want = 0, magnitude = 0;
      for (int64_t j = 0; j < kk; ++j) {
        const double term = v[r * kk + j] * code(a, r % batch, j);
        want += term, magnitude += std::fabs(term);
      }
      expect("code_dots", dots[r], want, (tol_codes + kU * (kk / 32.0 + 8)) * magnitude, tag);
    }
  }
  // The gradient, in the scores' dtype.
  std::vector<float> counts(crops), weights(batch);
  for (int64_t c = 0; c < crops; ++c)
    counts[c] = float(code_crops - std::count(assign.begin(), assign.end(), c));
  std::normal_distribution<float> normal;
  for (auto& w : weights) w = normal(rng);
  std::vector<float> lse_in(lse_ref.begin(), lse_ref.end());
  Typed grad(dtype, rows_total * kk);
  if (k::swapped_gradient(s.data(), dtype, lse_in.data(), weights.data(), counts.data(), assign.data(), shifts.data(),
                          sample_shifts.data(), rows.data(), columns.data(), grad.data(), crops, batch, kk, code_crops,
                          float(inv_temperature), float(inv_epsilon), nullptr) != 0)
    std::printf("FAIL status %s\n", tag);
  // The output's rounding (to nearest: half a step, up to 2^-8 of a bfloat16 value; one step allowed),
  // and float16's subnormal spacing 2^-24 below 2^-14.
  const double rounding = dtype == k::kFloat32 ? 0 : dtype == k::kFloat16 ? 1.0 / 1024 : 1.0 / 128;
  const double subnormal = dtype == k::kFloat16 ? kU : 0;
  const double tol_softmax = kU * (2 * largest * 2 + 8);
  for (int64_t vv = 0; vv < crops; ++vv)
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < kk; ++j) {
        const int64_t r = vv * batch + b;
        const double softmax = counts[vv] * std::exp(v[r * kk + j] * inv_temperature - double(lse_in[r]));
        double want = softmax, magnitude = softmax;
        for (int64_t a = 0; a < code_crops; ++a)
          if (assign[a] != vv) want -= code(a, b, j), magnitude += code(a, b, j);
        want *= weights[b];
        magnitude *= std::fabs(weights[b]);
        expect("gradient", grad.get(r * kk + j), want,
               (std::max(tol_softmax, tol_codes) + 8 * kU) * magnitude + rounding * std::fabs(want) + subnormal,
               tag);
      }
}

int main() {
  // Cosine-like scores, and scores far past exp's float32 range at ε = 0.05; the half types differ
  // from float32 in their loads only, so they get fewer sizes.
  const long passes[][2] = {{1, 1}, {1, 7}, {5, 1}, {0, 5}, {13, 300}, {70, 33}, {9, 260}, {100, 3}};
  for (const auto& size : passes)
    for (float spread : {0.3f, 8.0f}) check_passes(k::kFloat32, size[0], size[1], spread);
  for (int dtype : {k::kFloat16, k::kBFloat16})
    for (const auto& size : {passes[2], passes[4], passes[5]}) check_passes(dtype, size[0], size[1], 0.3f);
  struct Loss {
    long crops, batch, k;
    std::vector<int64_t> assign;
  };
  const Loss losses[] = {{2, 1, 1, {0, 1}}, {3, 4, 7, {2, 0}}, {2, 5, 300, {1}}, {9, 3, 40, {0, 1}},
                         {4, 6, 100, {0, 1, 3}}};
  for (int dtype : {k::kFloat32, k::kFloat16, k::kBFloat16})
    for (const Loss& loss : losses) check_loss(dtype, loss.crops, loss.batch, loss.k, loss.assign);
  std::printf("%d checks, %d failures, worst error %.3g of its bound (%s)\n", checks, failures, worst, worst_at);
  return failures != 0;
}
