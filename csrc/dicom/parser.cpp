#include "dicom/parser.h"

#include <algorithm>
#include <cstring>

#include "dicom/inflate.h"

namespace cxrfast::dicom {
namespace {

constexpr uint32_t kItem = 0xFFFEE000u;
constexpr uint32_t kItemDelimiter = 0xFFFEE00Du;
constexpr uint32_t kSequenceDelimiter = 0xFFFEE0DDu;
constexpr uint32_t kTransferSyntaxUID = 0x00020010u;
constexpr int kMaxDepth = 64;  // nesting deeper than this is hostile, not clinical

const char* const kDeflated = "1.2.840.10008.1.2.1.99";
const char* const kImplicitLittle = "1.2.840.10008.1.2";
const char* const kExplicitLittle = "1.2.840.10008.1.2.1";
const char* const kExplicitBig = "1.2.840.10008.1.2.2";

// VRs whose explicit encoding has two reserved bytes and a 32-bit length (PS3.5 7.1.2).
bool has_long_length(uint16_t vr) {
  switch (vr) {
    case vr_code('O', 'B'): case vr_code('O', 'D'): case vr_code('O', 'F'):
    case vr_code('O', 'L'): case vr_code('O', 'V'): case vr_code('O', 'W'):
    case vr_code('S', 'Q'): case vr_code('S', 'V'): case vr_code('U', 'C'):
    case vr_code('U', 'N'): case vr_code('U', 'R'): case vr_code('U', 'T'):
    case vr_code('U', 'V'):
      return true;
    default:
      return false;
  }
}

bool is_vr_char(uint8_t c) { return c >= 'A' && c <= 'Z'; }

bool is_known_vr(uint8_t a, uint8_t b) {
  static const char* const kShort[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO",
                                       "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"};
  uint16_t vr = vr_code(char(a), char(b));
  if (has_long_length(vr)) return true;
  for (const char* s : kShort) {
    if (vr == vr_code(s[0], s[1])) return true;
  }
  return false;
}

std::string hex_tag(uint32_t tag) {
  static const char digits[] = "0123456789ABCDEF";
  std::string s = "(gggg,eeee)";
  for (int i = 0; i < 4; ++i) {
    s[1 + i] = digits[(tag >> (28 - 4 * i)) & 0xF];
    s[6 + i] = digits[(tag >> (12 - 4 * i)) & 0xF];
  }
  return s;
}

// Signals that a partial buffer ended before the pixel data: not an error, just "read more".
struct OutOfData {};

class Reader {
 public:
  Reader(const uint8_t* data, size_t size, bool explicit_vr, bool little_endian, bool partial)
      : data_(data), size_(size), explicit_(explicit_vr), little_(little_endian), partial_(partial) {}

  uint16_t u16(uint64_t at) const {
    need(at, 2);
    return little_ ? static_cast<uint16_t>(data_[at] | data_[at + 1] << 8)
                   : static_cast<uint16_t>(data_[at] << 8 | data_[at + 1]);
  }
  uint32_t u32(uint64_t at) const {
    need(at, 4);
    const uint8_t* p = data_ + at;
    return little_ ? (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24)
                   : (uint32_t(p[3]) | uint32_t(p[2]) << 8 | uint32_t(p[1]) << 16 | uint32_t(p[0]) << 24);
  }
  uint32_t tag(uint64_t at) const { return uint32_t(u16(at)) << 16 | u16(at + 2); }

  // Throws unless [at, at + n) lies inside the buffer.
  void need(uint64_t at, uint64_t n) const {
    if (at <= size_ && n <= size_ - at) return;
    if (partial_) throw OutOfData{};
    throw ParseError("truncated: " + std::to_string(n) + " bytes needed at offset " + std::to_string(at) +
                     " but the data ends at " + std::to_string(size_));
  }

  const uint8_t* data_;
  size_t size_;
  bool explicit_;
  bool little_;
  bool partial_;
};

struct Header {
  uint32_t tag;
  uint16_t vr;
  uint32_t length;
  uint64_t value;  // offset of the value
};

class Walker {
 public:
  Walker(Reader& r, const ParseOptions& o, Dataset& d) : r_(r), opts_(o), ds_(d) {}

  Header header(uint64_t at) const {
    Header h{};
    h.tag = r_.tag(at);
    if ((h.tag >> 16) == 0xFFFE) {  // items and delimiters are always implicit-style
      h.length = r_.u32(at + 4);
      h.value = at + 8;
      return h;
    }
    if (r_.explicit_) {
      r_.need(at + 4, 2);
      uint8_t a = r_.data_[at + 4], b = r_.data_[at + 5];
      if (!is_vr_char(a) || !is_vr_char(b)) {
        static const char digits[] = "0123456789ABCDEF";
        const char vr_hex[] = {'0', 'x', digits[a >> 4], digits[a & 0xF], ',',
                               '0', 'x', digits[b >> 4], digits[b & 0xF], 0};
        throw ParseError(std::string("invalid VR bytes ") + vr_hex + " for " + hex_tag(h.tag) + " at offset " +
                         std::to_string(at));
      }
      h.vr = vr_code(static_cast<char>(a), static_cast<char>(b));
      if (has_long_length(h.vr)) {
        h.length = r_.u32(at + 8);
        h.value = at + 12;
      } else {
        h.length = r_.u16(at + 6);
        h.value = at + 8;
      }
    } else {
      h.length = r_.u32(at + 4);
      h.value = at + 8;
    }
    return h;
  }

  bool wanted_sequence(uint32_t tag) const {
    return std::find(opts_.sequences.begin(), opts_.sequences.end(), tag) != opts_.sequences.end();
  }

  // Walks elements in [at, end) (end = buffer size for undefined-length items) and returns the
  // offset after the last one, or after the item delimiter when `until_delimiter`.
  uint64_t elements(uint64_t at, uint64_t end, bool until_delimiter, int depth, uint32_t seq, int32_t item) {
    if (depth > kMaxDepth) throw ParseError("sequences nested deeper than 64 levels at offset " + std::to_string(at));
    while (at < end) {
      if (!until_delimiter && depth == 0 && end - at < 8 && !r_.partial_) {
        throw ParseError("truncated: " + std::to_string(end - at) + " stray bytes at offset " + std::to_string(at));
      }
      Header h = header(at);
      if (h.tag == kItemDelimiter) {
        if (until_delimiter) return h.value;
        throw ParseError("item delimiter outside an item at offset " + std::to_string(at));
      }
      if (h.tag == kSequenceDelimiter || h.tag == kItem) {
        throw ParseError(std::string(h.tag == kItem ? "item" : "sequence delimiter") +
                         " outside a sequence at offset " + std::to_string(at));
      }
      if (depth == 0 && h.tag == kPixelData) {
        at = pixel_data(h);
        if (opts_.stop_before_pixels) return at;
        continue;
      }
      bool sequence = h.vr == vr_code('S', 'Q') || h.length == kUndefinedLength ||
                      (!r_.explicit_ && wanted_sequence(h.tag));
      // Top-level elements, and every element within the items of the top-level sequences asked
      // for (nested ones too: an enhanced CT frame's position sits two sequences down), reported
      // as elements of the top-level item.
      if (depth == 0 || seq != 0) {
        ds_.elements.push_back({h.tag, h.vr, seq, item, h.value, h.length});
      }
      if (h.tag == kPixelData && h.length == kUndefinedLength) {  // e.g. an Icon Image Sequence
        at = fragments(h.value, false);
      } else if (sequence) {
        uint32_t report_as = depth == 0 ? (wanted_sequence(h.tag) ? h.tag : 0) : seq;
        // An undefined-length UN holds implicit VR little endian (PS3.5 6.2.2).
        bool implicit_un = h.vr == vr_code('U', 'N') && h.length == kUndefinedLength;
        bool saved = r_.explicit_;
        if (implicit_un) r_.explicit_ = false;
        at = items(h, end, depth, report_as, item);
        r_.explicit_ = saved;
      } else {
        r_.need(h.value, h.length);
        if (h.length > end - h.value) {
          throw ParseError("value of " + hex_tag(h.tag) + " at offset " + std::to_string(h.value) +
                           " (length " + std::to_string(h.length) + ") runs past its enclosing item");
        }
        at = h.value + h.length;
      }
    }
    if (until_delimiter) {
      if (r_.partial_) throw OutOfData{};
      throw ParseError("truncated: item without a delimiter ends at offset " + std::to_string(at));
    }
    return at;
  }

  // Items of a sequence; returns the offset after it. Items of a top-level sequence are
  // reported by their own index; those of a sequence nested in one by the top-level item's.
  uint64_t items(const Header& sq, uint64_t end, int depth, uint32_t report_as, int32_t top_item) {
    bool undefined = sq.length == kUndefinedLength;
    uint64_t stop = end;
    if (!undefined) {
      r_.need(sq.value, sq.length);
      if (sq.length > end - sq.value) {
        throw ParseError("sequence " + hex_tag(sq.tag) + " at offset " + std::to_string(sq.value) +
                         " runs past its enclosing item");
      }
      stop = sq.value + sq.length;
    }
    uint64_t at = sq.value;
    int32_t index = 0;
    while (at < stop) {
      uint32_t tag = r_.tag(at);
      uint32_t length = r_.u32(at + 4);
      if (tag == kSequenceDelimiter) return at + 8;
      if (tag != kItem) {
        throw ParseError("expected an item in sequence " + hex_tag(sq.tag) + " at offset " + std::to_string(at) +
                         ", found " + hex_tag(tag));
      }
      uint64_t value = at + 8;
      uint32_t seq = report_as;
      int32_t item = !report_as ? -1 : depth == 0 ? index : top_item;  // elements() records only when seq != 0
      if (length == kUndefinedLength) {
        at = elements(value, stop, true, depth + 1, seq, item);
      } else {
        r_.need(value, length);
        if (length > stop - value) {
          throw ParseError("item at offset " + std::to_string(at) + " runs past sequence " + hex_tag(sq.tag));
        }
        elements(value, value + length, false, depth + 1, seq, item);
        at = value + length;
      }
      ++index;
    }
    if (undefined) {
      if (r_.partial_) throw OutOfData{};
      throw ParseError("truncated: sequence " + hex_tag(sq.tag) + " has no sequence delimiter");
    }
    return at;
  }


  uint64_t pixel_data(const Header& h) {
    ds_.has_pixel_data = true;
    ds_.pixel_vr = h.vr;
    ds_.pixel_offset = h.value;
    ds_.pixel_length = h.length;
    if (h.length != kUndefinedLength) {
      if (opts_.stop_before_pixels) return h.value;
      r_.need(h.value, h.length);
      return h.value + h.length;
    }
    ds_.encapsulated = true;
    if (opts_.stop_before_pixels) return h.value;
    return fragments(h.value, true);
  }

  // Encapsulated pixel data items from `at`: the Basic Offset Table, then fragments up to the
  // sequence delimiter. Returns the offset after the delimiter.
  uint64_t fragments(uint64_t at, bool keep) {
    uint32_t tag = r_.tag(at);
    if (tag != kItem) throw ParseError("encapsulated pixel data does not start with a Basic Offset Table item");
    uint32_t bot_length = r_.u32(at + 4);
    if (bot_length == kUndefinedLength || bot_length % 4 != 0) {
      throw ParseError("Basic Offset Table length " + std::to_string(bot_length) + " is not a multiple of 4");
    }
    r_.need(at + 8, bot_length);
    if (keep) {
      for (uint32_t i = 0; i < bot_length; i += 4) ds_.basic_offset_table.push_back(r_.u32(at + 8 + i));
    }
    at += 8 + uint64_t(bot_length);
    uint64_t first = at;
    for (;;) {
      if (at == r_.size_ && !r_.partial_) {
        throw ParseError("truncated: encapsulated pixel data has no sequence delimiter");
      }
      tag = r_.tag(at);
      uint32_t length = r_.u32(at + 4);
      if (tag == kSequenceDelimiter) return at + 8;
      if (tag != kItem) {
        throw ParseError("expected a pixel data fragment at offset " + std::to_string(at) + ", found " + hex_tag(tag));
      }
      if (length == kUndefinedLength) {
        throw ParseError("pixel data fragment with undefined length at offset " + std::to_string(at));
      }
      r_.need(at + 8, length);
      if (keep) ds_.fragments.push_back({at - first, at + 8, length});
      at += 8 + uint64_t(length);
    }
  }

 private:
  Reader& r_;
  const ParseOptions& opts_;
  Dataset& ds_;
};

// No file meta: infer the encoding from the first element, as dcmtk and pydicom do.
void infer_encoding(const uint8_t* p, size_t n, Dataset& ds) {
  if (n < 8) throw ParseError("not DICOM: " + std::to_string(n) + " bytes are too few for one element");
  bool vr_like = is_vr_char(p[4]) && is_vr_char(p[5]);
  uint16_t group_le = uint16_t(p[0] | p[1] << 8);
  uint16_t group_be = uint16_t(p[0] << 8 | p[1]);
  ds.little_endian = !(group_be < group_le && group_be != 0 && group_be <= 0x0008);
  ds.explicit_vr = vr_like;
  uint16_t group = ds.little_endian ? group_le : group_be;
  if (group != 0x0008 && group != 0x0010 && group != 0x0018 && group != 0x0020 && group != 0x0028 &&
      group != 0x0002 && group != 0x0004) {
    throw ParseError("not DICOM: no 'DICM' prefix and the data does not start with a recognisable element");
  }
  ds.transfer_syntax = !ds.explicit_vr ? kImplicitLittle : (ds.little_endian ? kExplicitLittle : kExplicitBig);
}

std::string trim_uid(const uint8_t* p, size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Dataset parse(const uint8_t* data, size_t size, const ParseOptions& options) {
  Dataset ds;
  uint64_t at = 0;
  bool prefixed = true;
  if (size >= 132 && std::memcmp(data + 128, "DICM", 4) == 0) {
    at = 132;
  } else if (size >= 4 && std::memcmp(data, "DICM", 4) == 0) {
    at = 4;
  } else {
    prefixed = false;
  }
  try {
    // File meta information: explicit VR little endian, group 0002, with or without group length.
    Reader meta(data, size, true, true, options.partial);
    Walker meta_walker(meta, options, ds);
    uint64_t meta_end = 0;  // from (0002,0000) File Meta Information Group Length, if present
    while (at + 8 <= size && meta.u16(at) == 0x0002) {
      Header h = meta_walker.header(at);
      if (h.length == kUndefinedLength) throw ParseError("file meta element with undefined length");
      meta.need(h.value, h.length);
      ds.meta.push_back({h.tag, h.vr, 0, -1, h.value, h.length});
      if (h.tag == kTransferSyntaxUID) ds.transfer_syntax = trim_uid(data + h.value, h.length);
      if (h.tag == 0x00020000u && h.length == 4) meta_end = h.value + 4 + uint64_t(meta.u32(h.value));
      at = h.value + h.length;
    }
    ds.has_meta = !ds.meta.empty();
    if (at + 8 > size && options.partial) throw OutOfData{};
    if (at + 8 > size && at < meta_end) {  // ran out of bytes inside the file meta group
      throw ParseError("truncated: the file meta information ends at offset " + std::to_string(meta_end) +
                       " but the data ends at " + std::to_string(size));
    }
    if (at + 8 > size && at < size && prefixed) {  // a 'DICM' file cut inside an element header
      throw ParseError("truncated: " + std::to_string(size - at) + " stray bytes at offset " + std::to_string(at));
    }
    if (ds.transfer_syntax.empty()) {
      infer_encoding(data + at, size - at, ds);
    } else if (ds.transfer_syntax == kImplicitLittle) {
      ds.explicit_vr = false;
    } else if (ds.transfer_syntax == kExplicitBig) {
      ds.little_endian = false;
    } else if (ds.transfer_syntax == kDeflated) {
      ds.deflated = true;
    }
    const uint8_t* body = data;
    size_t body_size = size;
    if (ds.deflated) {
      if (options.partial) throw OutOfData{};  // a deflate stream cannot be parsed from a prefix
      ds.inflated = inflate_raw(data + at, size - at, options.max_inflated_bytes);
      body = ds.inflated.data();
      body_size = ds.inflated.size();
      at = 0;
    }
    // Some writers declare one VR encoding and use the other: trust the first element.
    if (at + 6 <= body_size) {
      bool looks_explicit = is_known_vr(body[at + 4], body[at + 5]);
      if (ds.explicit_vr != looks_explicit && (ds.explicit_vr || ds.little_endian)) ds.explicit_vr = looks_explicit;
    }
    Reader reader(body, body_size, ds.explicit_vr, ds.little_endian, options.partial);
    Walker walker(reader, options, ds);
    walker.elements(at, body_size, false, 0, 0, -1);
  } catch (const OutOfData&) {
    ds.complete = false;
  }
  return ds;
}

}  // namespace cxrfast::dicom
