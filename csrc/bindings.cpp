// cxrfast._C: the one registration point of the C++ kernels. Works on raw buffers (numpy
// arrays, bytes, memoryviews) and releases the GIL around every pass over pixel data.
#include <fcntl.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "dicom/parser.h"
#include "dicom/pixels.h"
#include "dicom/rle.h"
#include "masking/group_masks.h"
#include "sparse/depthwise.h"
#include "stats/bootstrap_auroc.h"

namespace py = pybind11;
using namespace cxrfast::dicom;

namespace {

struct Bytes {
  const uint8_t* data;
  size_t size;
};

Bytes bytes_of(const py::buffer& b) {
  py::buffer_info info = b.request();
  if (!PyBuffer_IsContiguous(info.view(), 'C')) throw py::value_error("buffer must be C-contiguous");
  return {static_cast<const uint8_t*>(info.ptr), size_t(info.size) * size_t(info.itemsize)};
}

// a * b, refusing sizes that wrap around (a count of 2^63 values would otherwise pass every check).
size_t times(size_t a, size_t b) {
  size_t product;
  if (__builtin_mul_overflow(a, b, &product)) {
    throw py::value_error(std::to_string(a) + " * " + std::to_string(b) + " bytes overflow");
  }
  return product;
}

uint8_t* writable_bytes(py::array& a, size_t need, const char* what) {
  if (!a.writeable()) throw py::value_error(std::string(what) + " is read-only");
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(what) + " must be C-contiguous");
  if (size_t(a.nbytes()) < need) {
    throw py::value_error(std::string(what) + " holds " + std::to_string(a.nbytes()) + " bytes, " +
                          std::to_string(need) + " needed");
  }
  return static_cast<uint8_t*>(a.mutable_data());
}

void check_format(const PixelFormat& f) {
  if (f.bits_allocated != 8 && f.bits_allocated != 16 && f.bits_allocated != 32) {
    throw py::value_error("bits_allocated must be 8, 16 or 32, not " + std::to_string(f.bits_allocated));
  }
  if (f.bits_stored < 1 || f.bits_stored > f.bits_allocated) {
    throw py::value_error("bits_stored " + std::to_string(f.bits_stored) + " is outside 1.." +
                          std::to_string(f.bits_allocated));
  }
}

const uint8_t* source_span(const py::buffer& src, uint64_t offset, size_t count, const PixelFormat& f) {
  Bytes b = bytes_of(src);
  uint64_t need = times(count, size_t(f.bits_allocated / 8));
  if (offset > b.size || need > b.size - offset) {
    throw py::value_error("source of " + std::to_string(b.size) + " bytes is too short for " + std::to_string(count) +
                          " values at offset " + std::to_string(offset));
  }
  return b.data + offset;
}

Lut lut_of(const py::array_t<float, py::array::c_style>& lut, int64_t first) {
  if (lut.ndim() != 1 || lut.size() == 0) throw py::value_error("lut must be a non-empty 1-d float32 array");
  return {lut.data(), first, int64_t(lut.size())};
}

// An open file descriptor closed on scope exit; errors become OSError naming the path.
struct File {
  int fd;
  explicit File(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd < 0) {
      errno = errno ? errno : EIO;
      PyErr_SetFromErrnoWithFilename(PyExc_OSError, path.c_str());
      throw py::error_already_set();
    }
  }
  ~File() { ::close(fd); }
};

py::list element_list(const std::vector<Element>& elements) {
  py::list out(elements.size());
  for (size_t i = 0; i < elements.size(); ++i) {
    const Element& e = elements[i];
    char vr[3] = {char(e.vr >> 8), char(e.vr & 0xFF), 0};
    out[i] = py::make_tuple(e.tag, e.vr ? vr : "", e.sequence, e.item, e.offset, e.length);
  }
  return out;
}

py::dict to_python(Dataset& ds) {
  py::dict d;
  d["complete"] = ds.complete;
  d["has_meta"] = ds.has_meta;
  // Latin-1, not UTF-8: the UID comes from the file and may hold any bytes.
  d["transfer_syntax"] = py::reinterpret_steal<py::str>(
      PyUnicode_DecodeLatin1(ds.transfer_syntax.data(), py::ssize_t(ds.transfer_syntax.size()), nullptr));
  d["explicit_vr"] = ds.explicit_vr;
  d["little_endian"] = ds.little_endian;
  d["deflated"] = ds.deflated;
  if (ds.deflated) {
    auto* owner = new std::vector<uint8_t>(std::move(ds.inflated));
    py::capsule free_owner(owner, [](void* p) { delete static_cast<std::vector<uint8_t>*>(p); });
    d["inflated"] = py::array_t<uint8_t>({py::ssize_t(owner->size())}, {1}, owner->data(), free_owner);
  } else {
    d["inflated"] = py::none();
  }
  d["meta"] = element_list(ds.meta);
  d["elements"] = element_list(ds.elements);
  d["has_pixel_data"] = ds.has_pixel_data;
  d["encapsulated"] = ds.encapsulated;
  char vr[3] = {char(ds.pixel_vr >> 8), char(ds.pixel_vr & 0xFF), 0};
  d["pixel_vr"] = ds.pixel_vr ? vr : "";
  d["pixel_offset"] = ds.pixel_offset;
  d["pixel_length"] = ds.pixel_length;
  d["basic_offset_table"] = ds.basic_offset_table;
  py::list fragments(ds.fragments.size());
  for (size_t i = 0; i < ds.fragments.size(); ++i) {
    const Fragment& f = ds.fragments[i];
    fragments[i] = py::make_tuple(f.position, f.offset, f.length);
  }
  d["fragments"] = fragments;
  return d;
}

using Floats = py::array_t<float, py::array::c_style>;
using Indices = py::array_t<int64_t, py::array::c_style>;

// Checks every shape and every position against the padded map before a kernel runs.
cxrfast::sparse::DepthwiseShape depthwise_shape(const Floats& input, const Indices& positions, const Floats& weight,
                                                int64_t stride, int64_t dilation) {
  if (input.ndim() != 4) throw py::value_error("input must be a (B, H, W, C) float32 map");
  if (positions.ndim() != 2 || positions.shape(1) != 3) throw py::value_error("positions must be (M, 3) int64");
  if (weight.ndim() != 3 || weight.shape(1) != weight.shape(2) || weight.shape(0) != input.shape(3)) {
    throw py::value_error("weight must be (C, k, k) with C the input's channels");
  }
  if (stride < 1 || dilation < 1) throw py::value_error("stride and dilation must be positive");
  cxrfast::sparse::DepthwiseShape s{input.shape(0), input.shape(1), input.shape(2), input.shape(3),
                                    weight.shape(1), stride, dilation, positions.shape(0)};
  const int64_t reach = (s.kernel - 1) * dilation;
  const int64_t* p = positions.data();
  for (int64_t m = 0; m < s.positions; ++m, p += 3) {
    if (p[0] < 0 || p[0] >= s.batch || p[1] < 0 || p[2] < 0 || p[1] * stride + reach >= s.height ||
        p[2] * stride + reach >= s.width) {
      throw py::value_error("position " + std::to_string(m) + " reads outside the padded input map");
    }
  }
  return s;
}

void check_size(const py::array& a, int64_t expected, const char* what) {
  if (a.size() != expected) {
    throw py::value_error(std::string(what) + " holds " + std::to_string(a.size()) + " values, " +
                          std::to_string(expected) + " expected");
  }
}

using Flags = py::array_t<uint8_t, py::array::c_style>;
using Draws = py::array_t<uint32_t, py::array::c_style>;

// Every index the bootstrap walk follows, checked before it runs: pool units and image units
// inside [0, U), each pool's columns inside random's, each order row a permutation of the images,
// and the weighted counts inside int64.
cxrfast::stats::BootstrapShape bootstrap_shape(const Draws& random, const Indices& pool_units, const Indices& pool_start,
                                               const Indices& pool_column, const Indices& unit, int64_t units,
                                               const Indices& order, const Flags& first, const Flags& positive) {
  if (random.ndim() != 2) throw py::value_error("random must be (B, columns) uint32");
  if (unit.ndim() != 1 || positive.ndim() != 1 || unit.shape(0) != positive.shape(0)) {
    throw py::value_error("unit and positive must be (N,) each");
  }
  if (order.ndim() != 2 || order.shape(1) != unit.shape(0)) throw py::value_error("order must be (K, N) int64");
  if (first.ndim() != 2 || first.shape(0) != order.shape(0) || first.shape(1) != order.shape(1)) {
    throw py::value_error("first must be (K, N) uint8, as order");
  }
  if (units < 1) throw py::value_error("units must be positive");
  if (pool_start.ndim() != 1 || pool_start.shape(0) < 1 || pool_column.ndim() != 1 ||
      pool_column.shape(0) != pool_start.shape(0) - 1 || pool_units.ndim() != 1) {
    throw py::value_error("pool_start must be (P + 1,) and pool_column (P,)");
  }
  cxrfast::stats::BootstrapShape s{random.shape(0), random.shape(1), pool_column.shape(0), unit.shape(0), units,
                                   order.shape(0)};
  const int64_t* starts = pool_start.data();
  if (starts[0] != 0 || starts[s.pools] != pool_units.shape(0)) {
    throw py::value_error("pool_start must run from 0 to the number of pool units");
  }
  int64_t drawn = 0;
  for (int64_t p = 0; p < s.pools; ++p) {
    const int64_t length = starts[p + 1] - starts[p], column = pool_column.data()[p];
    if (length < 0) throw py::value_error("pool_start must not decrease");
    if (column < 0 || column > s.columns - length) {
      throw py::value_error("pool " + std::to_string(p) + " reads columns outside random");
    }
    drawn += length;
  }
  for (int64_t m = 0; m < pool_units.shape(0); ++m) {
    const int64_t u = pool_units.data()[m];
    if (u < 0 || u >= units) throw py::value_error("pool unit " + std::to_string(m) + " is outside [0, units)");
  }
  std::vector<int64_t> images_of(size_t(units), 0);
  for (int64_t i = 0; i < s.images; ++i) {
    const int64_t u = unit.data()[i];
    if (u < 0 || u >= units) throw py::value_error("unit " + std::to_string(i) + " is outside [0, units)");
    ++images_of[size_t(u)];
  }
  int64_t largest = 0;
  for (int64_t c : images_of) largest = std::max(largest, c);
  if (drawn > 0 && largest > (int64_t(1) << 31) / drawn) {
    throw py::value_error("a replicate would weigh more than 2^31 images; its counts could overflow");
  }
  std::vector<uint8_t> seen(size_t(s.images));
  for (int64_t k = 0; k < s.models; ++k) {
    std::fill(seen.begin(), seen.end(), 0);
    const int64_t* row = order.data() + k * s.images;
    for (int64_t p = 0; p < s.images; ++p) {
      if (row[p] < 0 || row[p] >= s.images || seen[size_t(row[p])]++) {
        throw py::value_error("order row " + std::to_string(k) + " is not a permutation of the images");
      }
    }
    if (s.images && !first.data()[k * s.images]) throw py::value_error("first must mark position 0 of every row");
  }
  return s;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "cxrfast native kernels (C++, no libtorch)";
  py::register_exception<ParseError>(m, "ParseError", PyExc_ValueError);

  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("the number of threads must be at least 1");
#ifdef _OPENMP
        omp_set_num_threads(n);
#endif
      },
      py::arg("n"), "Threads the native kernels use (OpenMP); 1 inside data loader workers.");
  m.def("get_num_threads", [] {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });

  py::class_<PixelFormat>(m, "PixelFormat")
      .def(py::init([](int bits_allocated, int bits_stored, bool is_signed, bool swap_bytes) {
             PixelFormat f{bits_allocated, bits_stored, is_signed, swap_bytes};
             check_format(f);
             return f;
           }),
           py::kw_only(), py::arg("bits_allocated"), py::arg("bits_stored"), py::arg("is_signed") = false,
           py::arg("swap_bytes") = false)
      .def_readonly("bits_allocated", &PixelFormat::bits_allocated)
      .def_readonly("bits_stored", &PixelFormat::bits_stored)
      .def_readonly("is_signed", &PixelFormat::is_signed)
      .def_readonly("swap_bytes", &PixelFormat::swap_bytes);

  m.def(
      "parse",
      [](const py::buffer& buffer, bool stop_before_pixels, bool partial, std::vector<uint32_t> sequences,
         uint64_t max_inflated_bytes) {
        Bytes b = bytes_of(buffer);
        ParseOptions options;
        options.stop_before_pixels = stop_before_pixels;
        options.partial = partial;
        options.sequences = std::move(sequences);
        options.max_inflated_bytes = max_inflated_bytes;
        Dataset ds;
        {
          py::gil_scoped_release release;
          ds = parse(b.data, b.size, options);
        }
        return to_python(ds);
      },
      py::arg("buffer"), py::kw_only(), py::arg("stop_before_pixels") = false, py::arg("partial") = false,
      py::arg("sequences") = std::vector<uint32_t>{}, py::arg("max_inflated_bytes") = uint64_t(1) << 32,
      "Locate the elements and pixel data of a DICOM byte stream; raises ParseError.");

  m.def(
      "unpack_stored",
      [](const py::buffer& src, uint64_t offset, py::array dst, size_t count, const PixelFormat& f) {
        const uint8_t* s = source_span(src, offset, count, f);
        uint8_t* d = writable_bytes(dst, times(count, size_t(f.bits_allocated / 8)), "dst");
        py::gil_scoped_release release;
        unpack_stored(s, d, count, f);
      },
      py::arg("src"), py::arg("offset"), py::arg("dst"), py::arg("count"), py::arg("format"),
      "Raw Pixel Data values -> stored values (masked or sign-extended); src and dst may alias.");

  m.def(
      "map_stored",
      [](const py::buffer& src, uint64_t offset, py::array dst, size_t count, const PixelFormat& f,
         const py::array_t<float, py::array::c_style>& lut, int64_t first) {
        const uint8_t* s = source_span(src, offset, count, f);
        float* d = reinterpret_cast<float*>(writable_bytes(dst, times(count, 4), "dst"));
        if (dst.dtype().kind() != 'f' || dst.itemsize() != 4) throw py::value_error("dst must be float32");
        Lut l = lut_of(lut, first);
        py::gil_scoped_release release;
        map_stored(s, d, count, f, l);
      },
      py::arg("src"), py::arg("offset"), py::arg("dst"), py::arg("count"), py::arg("format"), py::arg("lut"),
      py::arg("first"), "Raw Pixel Data values -> lut[stored value - first] as float32.");

  m.def(
      "stored_range",
      [](const py::buffer& src, uint64_t offset, size_t count, const PixelFormat& f, int64_t pad_low,
         int64_t pad_high) {
        const uint8_t* s = source_span(src, offset, count, f);
        int64_t low = 0, high = 0;
        size_t kept;
        {
          py::gil_scoped_release release;
          kept = stored_range(s, count, f, pad_low, pad_high, &low, &high);
        }
        return py::make_tuple(low, high, kept);
      },
      py::arg("src"), py::arg("offset"), py::arg("count"), py::arg("format"), py::arg("pad_low") = 1,
      py::arg("pad_high") = 0, "(min, max, count) of stored values outside [pad_low, pad_high].");

  m.def(
      "read_stored",
      [](const std::string& path, uint64_t offset, py::array dst, size_t count, const PixelFormat& f) {
        uint8_t* d = writable_bytes(dst, times(count, size_t(f.bits_allocated / 8)), "dst");
        File file(path);
        bool ok;
        {
          py::gil_scoped_release release;
          ok = read_stored(file.fd, offset, d, count, f);
        }
        if (!ok) throw ParseError("truncated: pixel data ends before " + std::to_string(count) + " values");
      },
      py::arg("path"), py::arg("offset"), py::arg("dst"), py::arg("count"), py::arg("format"),
      "Read and unpack native Pixel Data straight from a file.");

  m.def(
      "read_mapped",
      [](const std::string& path, uint64_t offset, py::array dst, size_t count, const PixelFormat& f,
         const py::array_t<float, py::array::c_style>& lut, int64_t first) {
        float* d = reinterpret_cast<float*>(writable_bytes(dst, times(count, 4), "dst"));
        if (dst.dtype().kind() != 'f' || dst.itemsize() != 4) throw py::value_error("dst must be float32");
        Lut l = lut_of(lut, first);
        File file(path);
        bool ok;
        {
          py::gil_scoped_release release;
          ok = read_mapped(file.fd, offset, d, count, f, l);
        }
        if (!ok) throw ParseError("truncated: pixel data ends before " + std::to_string(count) + " values");
      },
      py::arg("path"), py::arg("offset"), py::arg("dst"), py::arg("count"), py::arg("format"), py::arg("lut"),
      py::arg("first"), "Read native Pixel Data from a file straight through a lookup table.");

  m.def(
      "depthwise_forward",
      [](const Floats& input, const Indices& positions, const Floats& weight, std::optional<Floats> bias,
         int64_t stride, int64_t dilation, Floats out) {
        auto s = depthwise_shape(input, positions, weight, stride, dilation);
        check_size(out, s.positions * s.channels, "out");
        if (bias) check_size(*bias, s.channels, "bias");
        const float* b = bias ? bias->data() : nullptr;
        float* o = out.mutable_data();
        py::gil_scoped_release release;
        cxrfast::sparse::depthwise_forward(input.data(), positions.data(), weight.data(), b, o, s);
      },
      py::arg("input"), py::arg("positions"), py::arg("weight"), py::arg("bias"), py::arg("stride"),
      py::arg("dilation"), py::arg("out").noconvert(),
      "Depthwise convolution at output positions (b, y, x) of a padded channels-last float32 map.");
  m.def(
      "depthwise_backward",
      [](const Floats& input, const Indices& positions, const Floats& weight, const Floats& grad_out, int64_t stride,
         int64_t dilation, Floats grad_input, Floats grad_weight) {
        auto s = depthwise_shape(input, positions, weight, stride, dilation);
        check_size(grad_out, s.positions * s.channels, "grad_out");
        check_size(grad_input, input.size(), "grad_input");
        check_size(grad_weight, weight.size(), "grad_weight");
        float* gi = grad_input.mutable_data();
        float* gw = grad_weight.mutable_data();
        py::gil_scoped_release release;
        cxrfast::sparse::depthwise_backward(input.data(), positions.data(), weight.data(), grad_out.data(), gi, gw, s);
      },
      py::arg("input"), py::arg("positions"), py::arg("weight"), py::arg("grad_out"), py::arg("stride"),
      py::arg("dilation"), py::arg("grad_input").noconvert(), py::arg("grad_weight").noconvert(),
      "Gradients of depthwise_forward; grad_input must be zeroed by the caller.");

  m.def(
      "bootstrap_auroc",
      [](const Draws& random, const Indices& pool_units, const Indices& pool_start, const Indices& pool_column,
         const Indices& unit, int64_t units, const Indices& order, const Flags& first, const Flags& positive,
         py::array_t<double, py::array::c_style> out) {
        auto s = bootstrap_shape(random, pool_units, pool_start, pool_column, unit, units, order, first, positive);
        check_size(out, s.replicates * s.models, "out");
        double* o = out.mutable_data();
        py::gil_scoped_release release;
        cxrfast::stats::bootstrap_auroc(random.data(), pool_units.data(), pool_start.data(), pool_column.data(),
                                        unit.data(), order.data(), first.data(), positive.data(), o, s);
      },
      py::arg("random"), py::arg("pool_units"), py::arg("pool_start"), py::arg("pool_column"), py::arg("unit"),
      py::arg("units"), py::arg("order"), py::arg("first"), py::arg("positive"), py::arg("out").noconvert(),
      "AUROC (B, K) of K models' scores in each of B replicates drawn from pools by a uint32 matrix.");

  m.def(
      "group_masks",
      [](Flags masks, Indices covered, const py::array_t<double, py::array::c_style>& target,
         const Indices& rectangles, Flags done, int64_t height, int64_t width) {
        if (rectangles.ndim() != 3 || rectangles.shape(2) != 4) {
          throw py::value_error("rectangles must be (B, K, 4) int64: top, left, height, width");
        }
        if (height < 1 || width < 1) throw py::value_error("height and width must be positive");
        cxrfast::masking::GroupMaskShape s{rectangles.shape(0), rectangles.shape(1), height, width};
        check_size(masks, int64_t(times(times(size_t(s.images), size_t(height)), size_t(width))), "masks");
        check_size(covered, s.images, "covered");
        check_size(target, s.images, "target");
        check_size(done, s.images, "done");
        const int64_t* r = rectangles.data();
        for (int64_t i = 0; i < s.images * s.rectangles; ++i, r += 4) {
          if (r[0] < 0 || r[1] < 0 || r[2] < 0 || r[3] < 0 || r[2] > height - r[0] || r[3] > width - r[1]) {
            throw py::value_error("rectangle " + std::to_string(i) + " leaves the " + std::to_string(height) + "x" +
                                  std::to_string(width) + " image");
          }
        }
        uint8_t* m_ = masks.mutable_data();
        int64_t* c = covered.mutable_data();
        uint8_t* d = done.mutable_data();
        py::gil_scoped_release release;
        cxrfast::masking::group_masks(m_, c, target.data(), rectangles.data(), d, s);
      },
      py::arg("masks").noconvert(), py::arg("covered").noconvert(), py::arg("target"), py::arg("rectangles"),
      py::arg("done").noconvert(), py::arg("height"), py::arg("width"),
      "Paint one round of GMML's rectangles into the masks of the images not yet done, in place.");

  m.def(
      "group_fill",
      [](Floats out, const Floats& images, const Flags& masks, const Indices& donor, const Floats& noise,
         const Indices& offset, const Indices& length) {
        if (images.ndim() != 3) throw py::value_error("images must be (B, C, P) float32");
        int64_t b = images.shape(0), channels = images.shape(1), pixels = images.shape(2);
        check_size(out, images.size(), "out");
        check_size(masks, b * pixels, "masks");
        for (auto [a, what] : {std::pair{&donor, "donor"}, {&offset, "offset"}, {&length, "length"}}) {
          check_size(*a, b, what);
        }
        for (int64_t i = 0; i < b; ++i) {
          if (donor.at(i) >= b) throw py::value_error("donor " + std::to_string(donor.at(i)) + " is not an image");
          if (donor.at(i) < 0 && (offset.at(i) < 0 || length.at(i) < 0 || length.at(i) % channels ||
                                  length.at(i) > noise.size() - offset.at(i))) {
            throw py::value_error("image " + std::to_string(i) + "'s noise leaves the noise buffer");
          }
        }
        float* o = out.mutable_data();
        int64_t short_of_noise;
        {
          py::gil_scoped_release release;
          short_of_noise = cxrfast::masking::group_fill(o, images.data(), masks.data(), donor.data(), noise.data(),
                                                        offset.data(), length.data(), b, channels, pixels);
        }
        if (short_of_noise >= 0) {
          throw py::value_error("image " + std::to_string(short_of_noise) + "'s mask needs more noise than given");
        }
      },
      py::arg("out").noconvert(), py::arg("images"), py::arg("masks"), py::arg("donor"), py::arg("noise"),
      py::arg("offset"), py::arg("length"),
      "out = the images, with the masked pixels another image's or noise values in turn (one pass).");

  m.def(
      "decode_rle_frame",
      [](const py::buffer& src, py::array dst, size_t rows, size_t columns, int samples_per_pixel,
         int bytes_per_sample) {
        if (samples_per_pixel < 1 || samples_per_pixel > 4 || bytes_per_sample < 1 || bytes_per_sample > 4) {
          throw py::value_error("unsupported RLE pixel format");
        }
        Bytes s = bytes_of(src);
        size_t need = times(times(rows, columns), size_t(samples_per_pixel * bytes_per_sample));
        uint8_t* d = writable_bytes(dst, need, "dst");
        py::gil_scoped_release release;
        decode_rle_frame(s.data, s.size, d, rows, columns, samples_per_pixel, bytes_per_sample);
      },
      py::arg("src"), py::arg("dst"), py::arg("rows"), py::arg("columns"), py::arg("samples_per_pixel"),
      py::arg("bytes_per_sample"), "Decode one RLE Lossless frame into little endian interleaved samples.");
}
