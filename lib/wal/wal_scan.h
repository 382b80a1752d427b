// Finding the committed transactions in a live WAL file: the frames after a
// known position that chain on from it (salts and checksums), up to the last
// commit frame SQLite itself counts as committed (the wal-index's mxFrame).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/wal/wal_format.h"
#include "lib/wal/wal_index.h"

namespace walship::wal {

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

// True if the WAL open at `fd` still holds `position`: the same generation,
// and the frame ending there is a commit frame with the checksum recorded
// when it was read (so SQLite did not restart the WAL and write it again).
// False for a position of no WAL (offset 0).
bool wal_holds(int fd, const std::string& path, const WalPosition& position);

}  // namespace walship::wal
