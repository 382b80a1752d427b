// SQLite's WAL file format (https://www.sqlite.org/fileformat2.html#walformat),
// parsed without touching the disk so it can be unit-tested and fuzzed.
//
//   header, 32 bytes: magic (0x377f0682: little-endian checksums, 0x377f0683:
//   big-endian), version 3007000, page size, checkpoint sequence, salt-1,
//   salt-2, checksum-1, checksum-2 (over the first 24 bytes).
//   frames: 24-byte header (pgno, db size in pages after commit or 0, salt-1,
//   salt-2, checksum-1, checksum-2) then the page. Checksums chain: each
//   frame's covers its first 8 header bytes and its page, seeded with the
//   previous frame's (the header's for the first frame).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace walship::wal {

inline constexpr size_t k_wal_header_size = 32;
inline constexpr size_t k_frame_header_size = 24;

struct Checksum {
  uint32_t s0 = 0;
  uint32_t s1 = 0;
  bool operator==(const Checksum&) const = default;
};

struct WalHeader {
  bool big_endian_checksums = false;
  uint32_t page_size = 0;
  uint32_t checkpoint_seq = 0;
  uint32_t salt1 = 0;
  uint32_t salt2 = 0;
  Checksum checksum;  // the seed of the first frame's checksum
  bool operator==(const WalHeader&) const = default;
};

struct FrameHeader {
  uint32_t pgno = 0;
  uint32_t commit_db_pages = 0;  // non-zero only on a transaction's last frame
  uint32_t salt1 = 0;
  uint32_t salt2 = 0;
  Checksum checksum;
};

// Where reading a WAL stands: just after a commit frame (or the header).
struct WalPosition {
  uint32_t salt1 = 0;
  uint32_t salt2 = 0;
  uint32_t checkpoint_seq = 0;
  uint32_t page_size = 0;
  uint64_t offset = 0;  // bytes; k_wal_header_size when no frame was read
  Checksum checksum;    // the running checksum at `offset`
  bool operator==(const WalPosition&) const = default;

  // The position of a WAL with no frames read yet.
  static WalPosition start_of(const WalHeader& header);
  bool same_generation(const WalHeader& header) const {
    return header.salt1 == salt1 && header.salt2 == salt2 && header.page_size == page_size;
  }
  bool same_generation(const WalPosition& other) const {
    return other.salt1 == salt1 && other.salt2 == salt2 && other.page_size == page_size;
  }
  // Frames before `offset`.
  uint64_t frame_index() const;
};

// SQLite's WAL checksum over `data` (a multiple of 8 bytes) seeded with `seed`.
Checksum wal_checksum(std::span<const std::byte> data, bool big_endian, Checksum seed);

// nullopt if the bytes are not a valid WAL header (bad magic, version, page
// size or checksum): SQLite then treats the WAL as empty.
std::optional<WalHeader> parse_wal_header(std::span<const std::byte> bytes);

FrameHeader parse_frame_header(std::span<const std::byte> bytes);

// True if the frame belongs to this WAL generation and its checksum chains on
// from `previous`; `page` is the frame's page data. Sets `next` to the chained
// checksum to validate the following frame.
bool frame_is_valid(const WalHeader& wal, const FrameHeader& frame,
                    std::span<const std::byte> frame_header_bytes, std::span<const std::byte> page,
                    Checksum previous, Checksum& next);

}  // namespace walship::wal
