// cxrfast._cuda: CUDA kernels on raw device pointers and the caller's stream. Importing it needs
// no GPU; calling a kernel without one raises RuntimeError.
#include <pybind11/pybind11.h>

#include <string>

#include "display_lut.h"
#include "sparse_gather_gemm.h"

namespace py = pybind11;

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
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
}
