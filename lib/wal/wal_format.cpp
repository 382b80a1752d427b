#include "lib/wal/wal_format.h"

#include <cstring>

#include "lib/util/endian.h"

namespace walship::wal {

namespace {

constexpr uint32_t k_magic_le = 0x377f0682;
constexpr uint32_t k_magic_be = 0x377f0683;
constexpr uint32_t k_wal_version = 3007000;

uint32_t load_le32(const std::byte* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

WalPosition WalPosition::start_of(const WalHeader& header) {
  WalPosition position;
  position.salt1 = header.salt1;
  position.salt2 = header.salt2;
  position.checkpoint_seq = header.checkpoint_seq;
  position.page_size = header.page_size;
  position.offset = k_wal_header_size;
  position.checksum = header.checksum;
  return position;
}

uint64_t WalPosition::frame_index() const {
  return (offset - k_wal_header_size) / (k_frame_header_size + page_size);
}

Checksum wal_checksum(std::span<const std::byte> data, bool big_endian, Checksum seed) {
  uint32_t s0 = seed.s0;
  uint32_t s1 = seed.s1;
  const std::byte* p = data.data();
  const std::byte* end = p + (data.size() & ~size_t{7});
  if (big_endian) {
    for (; p < end; p += 8) {
      s0 += get_be32(p) + s1;
      s1 += get_be32(p + 4) + s0;
    }
  } else {
    for (; p < end; p += 8) {
      s0 += load_le32(p) + s1;
      s1 += load_le32(p + 4) + s0;
    }
  }
  return {s0, s1};
}

std::optional<WalHeader> parse_wal_header(std::span<const std::byte> bytes) {
  if (bytes.size() < k_wal_header_size) return std::nullopt;
  const uint32_t magic = get_be32(bytes.data());
  if (magic != k_magic_le && magic != k_magic_be) return std::nullopt;
  if (get_be32(bytes.data() + 4) != k_wal_version) return std::nullopt;
  WalHeader header;
  header.big_endian_checksums = magic == k_magic_be;
  header.page_size = get_be32(bytes.data() + 8);
  if (header.page_size < 512 || header.page_size > 65536 ||
      (header.page_size & (header.page_size - 1)) != 0) {
    return std::nullopt;
  }
  header.checkpoint_seq = get_be32(bytes.data() + 12);
  header.salt1 = get_be32(bytes.data() + 16);
  header.salt2 = get_be32(bytes.data() + 20);
  header.checksum = {get_be32(bytes.data() + 24), get_be32(bytes.data() + 28)};
  if (wal_checksum(bytes.first(24), header.big_endian_checksums, {}) != header.checksum) return std::nullopt;
  return header;
}

FrameHeader parse_frame_header(std::span<const std::byte> bytes) {
  FrameHeader frame;
  frame.pgno = get_be32(bytes.data());
  frame.commit_db_pages = get_be32(bytes.data() + 4);
  frame.salt1 = get_be32(bytes.data() + 8);
  frame.salt2 = get_be32(bytes.data() + 12);
  frame.checksum = {get_be32(bytes.data() + 16), get_be32(bytes.data() + 20)};
  return frame;
}

bool frame_is_valid(const WalHeader& wal, const FrameHeader& frame,
                    std::span<const std::byte> frame_header_bytes, std::span<const std::byte> page,
                    Checksum previous, Checksum& next) {
  if (frame.salt1 != wal.salt1 || frame.salt2 != wal.salt2 || frame.pgno == 0) return false;
  if (page.size() != wal.page_size) return false;
  Checksum sum = wal_checksum(frame_header_bytes.first(8), wal.big_endian_checksums, previous);
  sum = wal_checksum(page, wal.big_endian_checksums, sum);
  if (sum != frame.checksum) return false;
  next = sum;
  return true;
}

}  // namespace walship::wal
