// Finding the committed transactions in a live WAL file: the frames after a
// known position that chain on from it (salts and checksums), up to the last
// commit frame SQLite itself counts as committed (the wal-index's mxFrame).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/wal/wal_format.h"

namespace walship::wal {

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
  // Frames before `offset`.
  uint64_t frame_index() const;
};

// The whole transactions found after a position.
struct CommittedFrames {
  WalPosition end;        // after the last commit frame; == the start when none
  uint32_t db_pages = 0;  // database size in pages after the last commit
  uint64_t commits = 0;
  uint64_t frames = 0;
  // The newest frame of each page written: (pgno, byte offset of the page
  // data in the WAL file), ascending pgno.
  std::vector<std::pair<uint32_t, uint64_t>> pages;
};

// Reads the WAL header at the start of the file open at `fd`; nullopt if the
// file is shorter or the header is not valid (SQLite treats the WAL as empty).
std::optional<WalHeader> read_wal_header(int fd, const std::string& path);

// Scans the WAL open at `fd` from `from` (which must be of `header`'s
// generation) and returns every whole transaction after it, never past frame
// number `max_frame` (1-based; the wal-index's mxFrame), stopping at the
// first frame that does not chain on. Reads in chunks; memory is bounded by
// the number of frames, not their size.
CommittedFrames scan_wal(int fd, const std::string& path, const WalHeader& header, const WalPosition& from,
                         uint64_t max_frame);

// The part of SQLite's wal-index header (the start of the -shm file,
// https://www.sqlite.org/walformat.html) that says what is committed.
struct WalIndexHeader {
  uint32_t max_frame = 0;
  uint32_t change = 0;  // iChange: SQLite adds one per commit (wraps; 0 again when the index is rebuilt)
  std::array<std::byte, 8> salt{};  // the WAL header's salt bytes, as stored there
};

// Reads the wal-index header from the -shm file open at `fd`: two copies that
// must agree (a writer updates them one after the other). nullopt if they do
// not after a few tries or the index is not initialised.
std::optional<WalIndexHeader> read_wal_index_header(int fd, const std::string& path);

// True if the wal-index salts are those of `header`.
bool wal_index_matches(const WalIndexHeader& index, const WalHeader& header);

}  // namespace walship::wal
