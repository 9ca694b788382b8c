// cxrfast._cuda: CUDA kernels on raw device pointers and the caller's stream. Importing it needs
// no GPU; calling a kernel without one raises RuntimeError.
#include <pybind11/pybind11.h>

#include <string>

#include "display_lut.h"
#include "similarity.h"
#include "sparse_gather_gemm.h"

namespace py = pybind11;

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// Sizes of a (n, d) and b (m, d) and the mode, as the similarity kernels need them; 64 rows or
// columns per block, so the grid's x dimension bounds n and m.
void check_similarity(int64_t n, int64_t m, int64_t d, int mode) {
  if (n < 0 || m < 0 || d < 1) throw py::value_error("invalid similarity sizes");
  if (mode != 0 && mode != 1) throw py::value_error("mode must be 0 (lse) or 1 (softplus)");
  if (n / 64 >= INT32_MAX || m / 64 >= INT32_MAX) throw py::value_error("too many rows for one launch");
}

// The backward kernels read g always, row_stat in lse mode, col_stat and h together or not at
// all; nothing is read when there is no logit.
void check_similarity_weights(int64_t n, int64_t m, int mode, uintptr_t row_stat, uintptr_t g, uintptr_t col_stat,
                              uintptr_t h) {
  if (n == 0 || m == 0) return;
  if (g == 0 || (mode == 0 && row_stat == 0)) throw py::value_error("g (and row_stat in lse mode) must be given");
  if ((col_stat == 0) != (h == 0)) throw py::value_error("col_stat and h must be given together");
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "cxrfast CUDA kernels (static CUDA runtime)";
  m.def("device_count", [] {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
  });
  m.def(
      "map_stored",
      [](uintptr_t stored, int bits, bool is_signed, int64_t count, uintptr_t lut, int64_t first, int64_t lut_size,
         uintptr_t dst, uintptr_t stream) {
        if (lut_size <= 0) throw py::value_error("lut must not be empty");
        if (count < 0) throw py::value_error("count must not be negative");
        py::gil_scoped_release release;
        check(cxrfast::cuda::map_stored(reinterpret_cast<const void*>(stored), bits, is_signed, count,
                                        reinterpret_cast<const float*>(lut), first, lut_size,
                                        reinterpret_cast<float*>(dst), reinterpret_cast<cudaStream_t>(stream)),
              "map_stored");
      },
      py::arg("stored"), py::arg("bits"), py::arg("is_signed"), py::arg("count"), py::arg("lut"), py::arg("first"),
      py::arg("lut_size"), py::arg("dst"), py::arg("stream"),
      "dst[i] = lut[clamp(stored[i] - first)] on the GPU, enqueued on `stream` (a cudaStream_t as int).");
  m.def(
      "gather_gemm_forward",
      [](uintptr_t rows, uintptr_t table, uintptr_t weight, uintptr_t bias, uintptr_t out, int64_t m_out,
         int64_t channels, int64_t n, int64_t taps, uintptr_t stream) {
        if (m_out < 0 || channels < 1 || n < 0 || taps < 1) throw py::value_error("invalid gather-GEMM sizes");
        py::gil_scoped_release release;
        check(cxrfast::cuda::gather_gemm_forward(
                  reinterpret_cast<const float*>(rows), reinterpret_cast<const int64_t*>(table),
                  reinterpret_cast<const float*>(weight), reinterpret_cast<const float*>(bias),
                  reinterpret_cast<float*>(out), m_out, channels, n, taps, reinterpret_cast<cudaStream_t>(stream)),
              "gather_gemm_forward");
      },
      py::arg("rows"), py::arg("table"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("m_out"),
      py::arg("channels"), py::arg("n"), py::arg("taps"), py::arg("stream"),
      "Sparse convolution as an implicit GEMM (float32 device pointers; bias 0 for none).");
  m.def(
      "gather_gemm_backward",
      [](uintptr_t rows, uintptr_t table, uintptr_t weight, uintptr_t grad_out, uintptr_t grad_rows,
         uintptr_t grad_weight, int64_t m_out, int64_t channels, int64_t n, int64_t taps, uintptr_t stream) {
        if (m_out < 0 || channels < 1 || n < 0 || taps < 1) throw py::value_error("invalid gather-GEMM sizes");
        py::gil_scoped_release release;
        check(cxrfast::cuda::gather_gemm_backward(
                  reinterpret_cast<const float*>(rows), reinterpret_cast<const int64_t*>(table),
                  reinterpret_cast<const float*>(weight), reinterpret_cast<const float*>(grad_out),
                  reinterpret_cast<float*>(grad_rows), reinterpret_cast<float*>(grad_weight), m_out, channels, n,
                  taps, reinterpret_cast<cudaStream_t>(stream)),
              "gather_gemm_backward");
      },
      py::arg("rows"), py::arg("table"), py::arg("weight"), py::arg("grad_out"), py::arg("grad_rows"),
      py::arg("grad_weight"), py::arg("m_out"), py::arg("channels"), py::arg("n"), py::arg("taps"),
      py::arg("stream"), "Gradients of gather_gemm_forward; grad_rows must be zeroed by the caller.");
  m.def(
      "similarity_forward_rows",
      [](uintptr_t a, uintptr_t b, uintptr_t out, int64_t n, int64_t m, int64_t d, float scale, float bias,
         bool exclude, int64_t offset, int mode, uintptr_t stream) {
        check_similarity(n, m, d, mode);
        py::gil_scoped_release release;
        check(cxrfast::cuda::similarity_forward_rows(reinterpret_cast<const float*>(a),
                                                     reinterpret_cast<const float*>(b), reinterpret_cast<float*>(out),
                                                     n, m, d, scale, bias, exclude, offset, mode,
                                                     reinterpret_cast<cudaStream_t>(stream)),
              "similarity_forward_rows");
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("n"), py::arg("m"), py::arg("d"), py::arg("scale"),
      py::arg("bias"), py::arg("exclude"), py::arg("offset"), py::arg("mode"), py::arg("stream"),
      "out (N,) = log-sum-exp (mode 0) or sum of softplus (mode 1) over each row of scale * a b^T + bias, entry "
      "(i, i + offset) left out with `exclude` (float32 device pointers).");
  m.def(
      "similarity_backward_a",
      [](uintptr_t a, uintptr_t b, uintptr_t row_stat, uintptr_t g, uintptr_t col_stat, uintptr_t h, uintptr_t grad,
         uintptr_t wdot, uintptr_t wsum, int64_t n, int64_t m, int64_t d, float scale, float bias, bool exclude,
         int64_t offset, int mode, uintptr_t stream) {
        check_similarity(n, m, d, mode);
        check_similarity_weights(n, m, mode, row_stat, g, col_stat, h);
        py::gil_scoped_release release;
        check(cxrfast::cuda::similarity_backward_a(
                  reinterpret_cast<const float*>(a), reinterpret_cast<const float*>(b),
                  reinterpret_cast<const float*>(row_stat), reinterpret_cast<const float*>(g),
                  reinterpret_cast<const float*>(col_stat), reinterpret_cast<const float*>(h),
                  reinterpret_cast<float*>(grad), reinterpret_cast<float*>(wdot), reinterpret_cast<float*>(wsum), n, m,
                  d, scale, bias, exclude, offset, mode, reinterpret_cast<cudaStream_t>(stream)),
              "similarity_backward_a");
      },
      py::arg("a"), py::arg("b"), py::arg("row_stat"), py::arg("g"), py::arg("col_stat"), py::arg("h"),
      py::arg("grad"), py::arg("wdot"), py::arg("wsum"), py::arg("n"), py::arg("m"), py::arg("d"), py::arg("scale"),
      py::arg("bias"), py::arg("exclude"), py::arg("offset"), py::arg("mode"), py::arg("stream"),
      "grad (N, D) = W b, wdot = rowsum(W * a b^T), wsum = rowsum(W) for the logit weights W (col_stat and h 0 "
      "for none; row_stat 0 allowed in mode 1); outputs overwritten.");
  m.def(
      "similarity_backward_b",
      [](uintptr_t a, uintptr_t b, uintptr_t row_stat, uintptr_t g, uintptr_t col_stat, uintptr_t h,
         uintptr_t grad_b, int64_t n, int64_t m, int64_t d, float scale, float bias, bool exclude, int64_t offset,
         int mode, uintptr_t stream) {
        check_similarity(n, m, d, mode);
        check_similarity_weights(n, m, mode, row_stat, g, col_stat, h);
        py::gil_scoped_release release;
        check(cxrfast::cuda::similarity_backward_b(
                  reinterpret_cast<const float*>(a), reinterpret_cast<const float*>(b),
                  reinterpret_cast<const float*>(row_stat), reinterpret_cast<const float*>(g),
                  reinterpret_cast<const float*>(col_stat), reinterpret_cast<const float*>(h),
                  reinterpret_cast<float*>(grad_b), n, m, d, scale, bias, exclude, offset, mode,
                  reinterpret_cast<cudaStream_t>(stream)),
              "similarity_backward_b");
      },
      py::arg("a"), py::arg("b"), py::arg("row_stat"), py::arg("g"), py::arg("col_stat"), py::arg("h"),
      py::arg("grad_b"), py::arg("n"), py::arg("m"), py::arg("d"), py::arg("scale"), py::arg("bias"),
      py::arg("exclude"), py::arg("offset"), py::arg("mode"), py::arg("stream"),
      "grad_b (M, D) = W^T a for the same weights as similarity_backward_a; overwritten.");
}
