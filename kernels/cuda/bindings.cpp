// cxrfast._cuda: CUDA kernels on raw device pointers and the caller's stream. Importing it needs
// no GPU; calling a kernel without one raises RuntimeError.
#include <pybind11/pybind11.h>

#include <string>

#include "display_lut.h"

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
}
