// SQLite's wal-index (the start of the -shm file,
// https://www.sqlite.org/walformat.html#the_wal_index_file_format): what it
// says is committed and checkpointed. The same 48-byte header is what
// sqlite3_snapshot_get() hands out, so it also tells where a read
// transaction sees the WAL end. Decoding is pure (unit-tested and fuzzable);
// the readers only fetch the bytes.
//
//   header, 48 bytes, native byte order (twice: two copies a writer updates
//   one after the other): iVersion 4, unused 4, iChange 4, isInit 1,
//   bigEndCksum 1, szPage 2, mxFrame 4, nPage 4, aFrameCksum 8, aSalt 8
//   (the WAL header's salt bytes, as stored there), aCksum 8.
//   checkpoint info, at byte 96: nBackfill 4 (frames copied to the database), ...
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "lib/wal/wal_format.h"

namespace walship::wal {

inline constexpr size_t k_wal_index_header_size = 48;
// The checkpoint info's nBackfill: after the two header copies.
inline constexpr size_t k_wal_index_backfill_offset = 2 * k_wal_index_header_size;

struct WalIndexHeader {
  uint32_t max_frame = 0;
  uint32_t change = 0;  // iChange: SQLite adds one per commit (wraps; 0 again when the index is rebuilt)
  bool initialised = false;
  Checksum frame_checksum;          // the running checksum after frame max_frame
  std::array<std::byte, 8> salt{};  // the WAL header's salt bytes, as stored there

  uint32_t salt1() const;
  uint32_t salt2() const;
};

// Decodes one header copy (or a sqlite3_snapshot's bytes). Checks nothing:
// read_wal_index_header() decides what to trust.
WalIndexHeader decode_wal_index_header(std::span<const std::byte, k_wal_index_header_size> bytes);

// Decodes the two copies at the start of the -shm file: nullopt when they
// disagree (a writer is between them) or the index is not initialised.
std::optional<WalIndexHeader> decode_wal_index(std::span<const std::byte, 2 * k_wal_index_header_size> bytes);

// Reads the wal-index header from the -shm file open at `fd`; nullopt if
// the copies still disagree after a few tries, or the index is not
// initialised (or the file is shorter).
std::optional<WalIndexHeader> read_wal_index_header(int fd, const std::string& path);

// nBackfill, the frames a checkpoint already copied to the database, from
// the -shm file open at `fd`; 0 when the file is shorter.
uint32_t read_wal_backfilled(int fd, const std::string& path);

// True if the wal-index salts are those of `header`.
bool wal_index_matches(const WalIndexHeader& index, const WalHeader& header);

// Where a read transaction sees the WAL end, from the wal-index header it
// read (its sqlite3_snapshot): that generation's salts, its frame count and
// the running checksum there. `wal`, the WAL file's header now, supplies
// the checkpoint sequence and, with no frame seen, the checksum, when it is
// of that generation.
WalPosition read_position(const WalIndexHeader& snapshot, uint32_t page_size,
                          const std::optional<WalHeader>& wal);

}  // namespace walship::wal
