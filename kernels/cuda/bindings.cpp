// cxrfast._cuda: CUDA kernels on raw device pointers and the caller's stream. Importing it needs
// no GPU; calling a kernel without one raises RuntimeError.
#include <pybind11/pybind11.h>

#include <string>

#include "display_lut.h"
#include "similarity.h"
#include "sinkhorn.h"
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

// Scores of `rows` rows (N samples, or V crops x B samples) of k prototypes in `dtype`, as the
// Sinkhorn kernels take them: 8 rows or 32 prototypes per block along the grid's x dimension.
void check_scores(int64_t rows, int64_t k, int dtype) {
  if (rows < 0 || k < 1) throw py::value_error("invalid Sinkhorn sizes");
  if (dtype != cxrfast::cuda::kFloat32 && dtype != cxrfast::cuda::kFloat16 && dtype != cxrfast::cuda::kBFloat16)
    throw py::value_error("dtype must be 0 (float32), 1 (float16) or 2 (bfloat16)");
  if (rows / 8 >= INT32_MAX || k / 32 >= INT32_MAX) throw py::value_error("too many scores for one launch");
}

// A Sinkhorn pass splits the axis it reduces into `chunks` pieces, none empty, along the grid's y dimension.
void check_chunks(int64_t chunks, int64_t length) {
  if (chunks < 1 || chunks > 65535 || (length > 0 && chunks > length))
    throw py::value_error("chunks must be between 1 and the reduced length (at most 65535)");
}

template <typename T>
const T* in(uintptr_t p) {
  return reinterpret_cast<const T*>(p);
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
  m.def(
      "sinkhorn_sample_shift",
      [](uintptr_t scores, int dtype, uintptr_t shift, uintptr_t partial, int64_t n, int64_t k, int64_t chunks,
         uintptr_t stream) {
        check_scores(n, k, dtype);
        check_chunks(chunks, k);
        py::gil_scoped_release release;
        check(cxrfast::cuda::sinkhorn_sample_shift(in<void>(scores), dtype, in<float>(shift),
                                                   reinterpret_cast<float*>(partial), n, k, chunks,
                                                   reinterpret_cast<cudaStream_t>(stream)),
              "sinkhorn_sample_shift");
      },
      py::arg("scores"), py::arg("dtype"), py::arg("shift"), py::arg("partial"), py::arg("n"), py::arg("k"),
      py::arg("chunks"), py::arg("stream"),
      "partial (chunks, N) = each sample's max of s_nk - shift_k over each chunk of the prototypes.");
  m.def(
      "sinkhorn_sample_totals",
      [](uintptr_t scores, int dtype, uintptr_t shift, uintptr_t sample_shift, uintptr_t rows, float inv_epsilon,
         uintptr_t partial, int64_t n, int64_t k, int64_t chunks, uintptr_t stream) {
        check_scores(n, k, dtype);
        check_chunks(chunks, k);
        py::gil_scoped_release release;
        check(cxrfast::cuda::sinkhorn_sample_totals(in<void>(scores), dtype, in<float>(shift), in<float>(sample_shift),
                                                    in<float>(rows), inv_epsilon, reinterpret_cast<float*>(partial),
                                                    n, k, chunks, reinterpret_cast<cudaStream_t>(stream)),
              "sinkhorn_sample_totals");
      },
      py::arg("scores"), py::arg("dtype"), py::arg("shift"), py::arg("sample_shift"), py::arg("rows"),
      py::arg("inv_epsilon"), py::arg("partial"), py::arg("n"), py::arg("k"), py::arg("chunks"), py::arg("stream"),
      "partial (chunks, N) = sum of e_nk * rows_k over each chunk of the prototypes.");
  m.def(
      "sinkhorn_prototype_totals",
      [](uintptr_t scores, int dtype, uintptr_t shift, uintptr_t sample_shift, uintptr_t columns, float inv_epsilon,
         uintptr_t partial, int64_t n, int64_t k, int64_t chunks, uintptr_t stream) {
        check_scores(n, k, dtype);
        check_chunks(chunks, n);
        py::gil_scoped_release release;
        check(cxrfast::cuda::sinkhorn_prototype_totals(
                  in<void>(scores), dtype, in<float>(shift), in<float>(sample_shift), in<float>(columns), inv_epsilon,
                  reinterpret_cast<float*>(partial), n, k, chunks, reinterpret_cast<cudaStream_t>(stream)),
              "sinkhorn_prototype_totals");
      },
      py::arg("scores"), py::arg("dtype"), py::arg("shift"), py::arg("sample_shift"), py::arg("columns"),
      py::arg("inv_epsilon"), py::arg("partial"), py::arg("n"), py::arg("k"), py::arg("chunks"), py::arg("stream"),
      "partial (chunks, K) = sum of e_nk * columns_n over each chunk of the samples.");
  m.def(
      "swapped_log_sum_exps",
      [](uintptr_t scores, int dtype, uintptr_t lse, int64_t crops, int64_t batch, int64_t k, float inv_temperature,
         uintptr_t stream) {
        if (crops < 0 || batch < 0) throw py::value_error("invalid Sinkhorn sizes");
        check_scores(crops * batch, k, dtype);
        py::gil_scoped_release release;
        check(cxrfast::cuda::swapped_log_sum_exps(in<void>(scores), dtype, reinterpret_cast<float*>(lse), crops, batch,
                                                  k, inv_temperature, reinterpret_cast<cudaStream_t>(stream)),
              "swapped_log_sum_exps");
      },
      py::arg("scores"), py::arg("dtype"), py::arg("lse"), py::arg("crops"), py::arg("batch"), py::arg("k"),
      py::arg("inv_temperature"), py::arg("stream"), "lse (V, B) = log sum_k exp(s_vbk * inv_temperature).");
  m.def(
      "swapped_code_dots",
      [](uintptr_t scores, int dtype, int64_t crop, uintptr_t shift, uintptr_t sample_shift, uintptr_t rows,
         uintptr_t columns, float inv_epsilon, uintptr_t dots, int64_t crops, int64_t batch, int64_t k,
         uintptr_t stream) {
        if (crops < 0 || batch < 0 || crop < 0 || crop >= crops) throw py::value_error("invalid Sinkhorn sizes");
        check_scores(crops * batch, k, dtype);
        py::gil_scoped_release release;
        check(cxrfast::cuda::swapped_code_dots(in<void>(scores), dtype, crop, in<float>(shift), in<float>(sample_shift),
                                               in<float>(rows), in<float>(columns), inv_epsilon,
                                               reinterpret_cast<float*>(dots), crops, batch, k,
                                               reinterpret_cast<cudaStream_t>(stream)),
              "swapped_code_dots");
      },
      py::arg("scores"), py::arg("dtype"), py::arg("crop"), py::arg("shift"), py::arg("sample_shift"),
      py::arg("rows"), py::arg("columns"), py::arg("inv_epsilon"), py::arg("dots"), py::arg("crops"),
      py::arg("batch"), py::arg("k"), py::arg("stream"),
      "dots (V, B) = sum_k s_vbk q_bk for the codes q of crop `crop` from its scales.");
  m.def(
      "swapped_gradient",
      [](uintptr_t scores, int dtype, uintptr_t lse, uintptr_t weights, uintptr_t counts, uintptr_t assign,
         uintptr_t shifts, uintptr_t sample_shifts, uintptr_t rows, uintptr_t columns, uintptr_t grad, int64_t crops,
         int64_t batch, int64_t k, int64_t code_crops, float inv_temperature, float inv_epsilon, uintptr_t stream) {
        if (crops < 0 || batch < 0 || code_crops < 1 || code_crops > crops)
          throw py::value_error("invalid Sinkhorn sizes");
        if (batch > 65535) throw py::value_error("too many samples for one launch");
        check_scores(crops * batch, k, dtype);
        py::gil_scoped_release release;
        check(cxrfast::cuda::swapped_gradient(in<void>(scores), dtype, in<float>(lse), in<float>(weights),
                                              in<float>(counts), in<int64_t>(assign), in<float>(shifts),
                                              in<float>(sample_shifts), in<float>(rows), in<float>(columns),
                                              reinterpret_cast<void*>(grad), crops, batch, k, code_crops,
                                              inv_temperature, inv_epsilon, reinterpret_cast<cudaStream_t>(stream)),
              "swapped_gradient");
      },
      py::arg("scores"), py::arg("dtype"), py::arg("lse"), py::arg("weights"), py::arg("counts"), py::arg("assign"),
      py::arg("shifts"), py::arg("sample_shifts"), py::arg("rows"), py::arg("columns"), py::arg("grad"),
      py::arg("crops"), py::arg("batch"), py::arg("k"), py::arg("code_crops"), py::arg("inv_temperature"),
      py::arg("inv_epsilon"), py::arg("stream"),
      "grad (V, B, K), in the scores' dtype, of SwAV's swapped prediction: weights_b * (counts_v * softmax_k - "
      "the codes of every code crop but v); the code crops' scales stacked (A, K) and (A, B).");
}
