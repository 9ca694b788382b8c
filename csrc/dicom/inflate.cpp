#include "dicom/inflate.h"

#include <zlib.h>

#include <algorithm>
#include <string>

#include "dicom/parser.h"

namespace cxrfast::dicom {

std::vector<uint8_t> inflate_raw(const uint8_t* data, size_t size, uint64_t max_bytes) {
  z_stream stream{};
  if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) throw ParseError("zlib could not be initialised");
  std::vector<uint8_t> out;
  out.resize(size * 4 + 4096 < max_bytes ? size * 4 + 4096 : max_bytes);
  // zlib counts in uInt: feed the input in pieces so buffers over 4 GiB stay correct.
  size_t consumed = 0;
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    if (stream.avail_in == 0 && consumed < size) {
      size_t piece = std::min<size_t>(size - consumed, 1u << 30);
      stream.next_in = const_cast<Bytef*>(data + consumed);
      stream.avail_in = static_cast<uInt>(piece);
      consumed += piece;
    }
    if (stream.total_out == out.size()) {
      if (out.size() >= max_bytes) {
        inflateEnd(&stream);
        throw ParseError("deflated dataset inflates past " + std::to_string(max_bytes) + " bytes");
      }
      out.resize(std::min<uint64_t>(out.size() * 2, max_bytes));
    }
    size_t room = std::min<size_t>(out.size() - stream.total_out, 1u << 30);
    stream.next_out = out.data() + stream.total_out;
    stream.avail_out = static_cast<uInt>(room);
    status = inflate(&stream, Z_NO_FLUSH);
    if (status == Z_BUF_ERROR && stream.avail_in == 0 && consumed == size) break;  // no end marker
    if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR) {
      std::string why = stream.msg ? stream.msg : "corrupt stream";
      inflateEnd(&stream);
      throw ParseError("deflated dataset cannot be inflated: " + why);
    }
  }
  out.resize(stream.total_out);
  inflateEnd(&stream);
  return out;
}

}  // namespace cxrfast::dicom
