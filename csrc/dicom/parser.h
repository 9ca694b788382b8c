// DICOM Part 10 / Part 5 structure parser: finds the elements a reader needs and where the
// pixel data lies, without decoding values. Works on a raw byte buffer and never reads past it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrfast::dicom {

// A structural problem in the byte stream; the message says what and at which byte offset.
class ParseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr uint32_t kUndefinedLength = 0xFFFFFFFFu;
constexpr uint32_t kPixelData = 0x7FE00010u;

inline constexpr uint16_t vr_code(char a, char b) {
  return static_cast<uint16_t>((static_cast<uint8_t>(a) << 8) | static_cast<uint8_t>(b));
}

struct Element {
  uint32_t tag;
  uint16_t vr;        // vr_code() of the explicit VR; 0 when the encoding is implicit
  uint32_t sequence;  // tag of the enclosing top-level sequence; 0 at the top level
  int32_t item;       // index of the item within that sequence; -1 at the top level
  uint64_t offset;    // of the value, in the buffer the element was read from
  uint64_t length;
};

// One item of encapsulated pixel data after the Basic Offset Table.
struct Fragment {
  uint64_t position;  // of the item tag, counted from the first fragment's item tag (BOT units)
  uint64_t offset;    // of the value in the buffer
  uint64_t length;
};

struct ParseOptions {
  bool stop_before_pixels = false;
  // The buffer may be a prefix of the file: running out of bytes before the pixel data is
  // reported through Dataset::complete instead of an error.
  bool partial = false;
  // Top-level sequences whose items' elements, nested ones included, are reported (e.g.
  // Modality/VOI LUT Sequence, the functional groups). In implicit VR these tags, at any depth,
  // are also how a defined-length sequence is recognised.
  std::vector<uint32_t> sequences;
  uint64_t max_inflated_bytes = 1ull << 32;
};

struct Dataset {
  bool complete = true;
  bool has_meta = false;
  std::string transfer_syntax;  // from (0002,0010), or inferred when there is no file meta
  bool explicit_vr = true;
  bool little_endian = true;
  bool deflated = false;
  std::vector<uint8_t> inflated;  // dataset bytes after inflation; dataset offsets index this
  std::vector<Element> meta;      // group 0002, offsets into the source buffer
  std::vector<Element> elements;  // the dataset, offsets into the source or `inflated`
  bool has_pixel_data = false;
  bool encapsulated = false;
  uint16_t pixel_vr = 0;
  uint64_t pixel_offset = 0;
  uint64_t pixel_length = 0;  // native: value length; encapsulated: kUndefinedLength
  std::vector<uint32_t> basic_offset_table;
  std::vector<Fragment> fragments;
};

Dataset parse(const uint8_t* data, size_t size, const ParseOptions& options);

}  // namespace cxrfast::dicom
