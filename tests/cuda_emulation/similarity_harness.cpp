// The CUDA similarity kernels, emulated on the CPU, against a double-precision reference on many shapes.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "similarity.h"  // kernels/cuda, on the include path

using cxrfast::cuda::similarity_backward_a;
using cxrfast::cuda::similarity_backward_b;
using cxrfast::cuda::similarity_forward_rows;

static int failures = 0;
static double worst = 0;
static double tolerance = 2e-5;  // float32 logits: errors grow with |scale| (|s| * eps inside exp)

static void expect(const char* what, double got, double ref, double mag, const char* tag) {
  bool ok;
  if (std::isinf(ref) || std::isnan(ref)) ok = got == ref || (std::isnan(ref) && std::isnan(got));
  else {
    const double err = std::fabs(got - ref) / (mag + 1e-3);
    if (err > worst) worst = err;
    ok = std::isfinite(got) && err <= tolerance;
  }
  if (!ok && failures++ < 20) std::printf("FAIL %s %s: got %.9g ref %.9g (mag %.3g)\n", tag, what, got, ref, mag);
}

int main() {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  const long sizes[][3] = {{1, 1, 1},    {1, 1, 5},     {3, 5, 7},      {64, 64, 32}, {65, 63, 33}, {130, 70, 31},
                           {70, 130, 64}, {0, 5, 3},    {5, 0, 3},      {129, 129, 65}, {2, 200, 100}, {200, 2, 9}};
  const long offsets[] = {-1 /*none*/, 0, -3, 60, 1000000000000L, std::numeric_limits<int64_t>::min() + 5};
  const float scales[][2] = {{1.0f, 0.0f}, {10.0f, -2.0f}, {-3.0f, 0.5f}, {60.0f, 1.0f}};
  int case_id = 0;
  for (const auto& sz : sizes)
    for (int oi = 0; oi < 6; ++oi)
      for (int mode = 0; mode < 2; ++mode)
        for (int use_col = 0; use_col < 2; ++use_col) {
          const long n = sz[0], m = sz[1], d = sz[2];
          if ((oi == 4 || oi == 5) && (use_col || n > 70)) continue;  // fewer of the far offsets
          const bool exclude = oi != 0;
          const long offset = exclude ? offsets[oi] : 0;
          const float scale = scales[case_id % 4][0], bias = scales[case_id % 4][1];
          char tag[160];
          std::snprintf(tag, sizeof tag, "[n=%ld m=%ld d=%ld excl=%d off=%ld mode=%d col=%d scale=%g bias=%g]", n, m,
                        d, exclude, offset, mode, use_col, scale, bias);
          ++case_id;
          tolerance = 2e-6 * (8.0 + std::fabs(scale));
          std::vector<float> a(n * d), b(m * d), g(n), h(m);
          for (auto& x : a) x = normal(rng) / std::sqrt(float(d));
          for (auto& x : b) x = normal(rng) / std::sqrt(float(d));
          for (auto& x : g) x = normal(rng);
          for (auto& x : h) x = normal(rng);
          // Reference logits.
          std::vector<double> s(n * m);
          std::vector<char> in(n * m);
          std::vector<double> dotv(n * m);
          for (long i = 0; i < n; ++i)
            for (long j = 0; j < m; ++j) {
              double dot = 0;
              for (long k = 0; k < d; ++k) dot += double(a[i * d + k]) * b[j * d + k];
              dotv[i * m + j] = dot;
              s[i * m + j] = double(scale) * dot + bias;
              in[i * m + j] = !(exclude && j - i == offset);
            }
          auto softplus = [](double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); };
          std::vector<double> row_ref(n), col_lse(m);
          for (long i = 0; i < n; ++i) {
            double mx = -INFINITY, acc = 0;
            for (long j = 0; j < m; ++j)
              if (in[i * m + j]) mx = std::max(mx, s[i * m + j]);
            for (long j = 0; j < m; ++j)
              if (in[i * m + j]) acc += mode == 0 ? std::exp(s[i * m + j] - mx) : softplus(s[i * m + j]);
            row_ref[i] = mode == 0 ? (mx == -INFINITY ? -INFINITY : mx + std::log(acc)) : acc;
          }
          for (long j = 0; j < m; ++j) {
            double mx = -INFINITY, acc = 0;
            for (long i = 0; i < n; ++i)
              if (in[i * m + j]) mx = std::max(mx, s[i * m + j]);
            for (long i = 0; i < n; ++i)
              if (in[i * m + j]) acc += std::exp(s[i * m + j] - mx);
            col_lse[j] = mx == -INFINITY ? -INFINITY : mx + std::log(acc);
          }
          // Forward.
          std::vector<float> out(n, 12345.0f);
          if (similarity_forward_rows(a.data(), b.data(), out.data(), n, m, d, scale, bias, exclude, offset, mode,
                                      nullptr) != 0)
            std::printf("FAIL status %s\n", tag);
          for (long i = 0; i < n; ++i) {
            double mag = std::fabs(row_ref[i]) + 1.0;  // a log-sum-exp near 0 is still |s| * eps off
            expect("forward", out[i], row_ref[i], mag, tag);
          }
          // Backward: the stats the kernels get are float32 (the row one from the reference, like autograd would).
          std::vector<float> row_stat(n), col_stat(m);
          for (long i = 0; i < n; ++i) row_stat[i] = float(row_ref[i]);
          for (long j = 0; j < m; ++j) col_stat[j] = float(col_lse[j]);
          std::vector<double> w(n * m, 0.0);
          for (long i = 0; i < n; ++i)
            for (long j = 0; j < m; ++j) {
              if (!in[i * m + j]) continue;
              const double x = s[i * m + j];
              double v = g[i] * (mode == 0 ? std::exp(x - double(row_stat[i])) : 1.0 / (1.0 + std::exp(-x)));
              if (use_col) v += h[j] * std::exp(x - double(col_stat[j]));
              w[i * m + j] = v;
            }
          std::vector<float> grad(n * d, NAN), wdot(n, NAN), wsum(n, NAN), grad_b(m * d, NAN);
          const float* rs = mode == 0 ? row_stat.data() : nullptr;  // unread in softplus mode
          const float* cs = use_col ? col_stat.data() : nullptr;
          const float* hs = use_col ? h.data() : nullptr;
          if (similarity_backward_a(a.data(), b.data(), rs, g.data(), cs, hs, grad.data(), wdot.data(), wsum.data(), n,
                                    m, d, scale, bias, exclude, offset, mode, nullptr) != 0 ||
              similarity_backward_b(a.data(), b.data(), rs, g.data(), cs, hs, grad_b.data(), n, m, d, scale, bias,
                                    exclude, offset, mode, nullptr) != 0)
            std::printf("FAIL status %s\n", tag);
          for (long i = 0; i < n; ++i) {
            double rd = 0, rdm = 0, rw = 0, rwm = 0;
            for (long j = 0; j < m; ++j) {
              rd += w[i * m + j] * dotv[i * m + j], rdm += std::fabs(w[i * m + j] * dotv[i * m + j]);
              rw += w[i * m + j], rwm += std::fabs(w[i * m + j]);
            }
            expect("wdot", wdot[i], rd, rdm, tag);
            expect("wsum", wsum[i], rw, rwm, tag);
            for (long k = 0; k < d; ++k) {
              double r = 0, mag = 0;
              for (long j = 0; j < m; ++j) r += w[i * m + j] * b[j * d + k], mag += std::fabs(w[i * m + j] * b[j * d + k]);
              expect("grad_a", grad[i * d + k], r, mag, tag);
            }
          }
          for (long j = 0; j < m; ++j)
            for (long k = 0; k < d; ++k) {
              double r = 0, mag = 0;
              for (long i = 0; i < n; ++i) r += w[i * m + j] * a[i * d + k], mag += std::fabs(w[i * m + j] * a[i * d + k]);
              expect("grad_b", grad_b[j * d + k], r, mag, tag);
            }
        }
  std::printf("%d cases, %d failures, worst relative error %.3g\n", case_id, failures, worst);
  return failures != 0;
}
