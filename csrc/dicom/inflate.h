// Deflated Explicit VR Little Endian: the dataset after the file meta is a raw RFC 1951 stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cxrfast::dicom {

// Inflates a raw deflate stream; throws ParseError on corrupt data or past max_bytes of output.
std::vector<uint8_t> inflate_raw(const uint8_t* data, size_t size, uint64_t max_bytes);

}  // namespace cxrfast::dicom
