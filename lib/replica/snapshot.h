// `walship snapshot DB URL`: a consistent full image of a live database,
// written as the next TXID of the replica.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lib/config/option_defs.h"
#include "lib/format/replica_file.h"
#include "lib/sqlite/sqlite.h"
#include "lib/storage/storage.h"
#include "lib/util/fs.h"

namespace walship {

struct SnapshotOptions {
  std::string db_path;
  int zstd_level = k_default_snapshot_zstd_level;
  bool quiet = false;  // no progress bar
  int64_t lease_ttl_ms = k_default_lease_ttl_ms;
};

struct SnapshotResult {
  std::string key;
  uint64_t txid = 0;
  uint32_t db_pages = 0;
  uint32_t page_size = 0;
  uint64_t db_bytes = 0;      // database size
  uint64_t object_bytes = 0;  // compressed snapshot size
  uint64_t checksum = 0;
  uint64_t commit_time_ms = 0;
};

// Holds one read transaction for the whole copy (so a concurrent writer never
// shows through half-applied), streams pages through a compressed spool file
// that is unlinked from the start, then uploads it with put_if_absent so two
// snapshots racing for the same TXID cannot overwrite each other.
SnapshotResult run_snapshot(const SnapshotOptions& options, Storage& storage);

// Calls fn(pgno, page) for every page of the database as `db`'s open read
// transaction sees it, ascending, skipping the lock page. Throws Failure if
// SQLite hands out pages out of order or of the wrong size.
void for_each_db_page(sqlite::Database& db, uint32_t page_size,
                      const std::function<void(uint32_t pgno, std::span<const std::byte> page)>& fn);

// What to open (read-only) to read a database no app should have open, the
// file restore --delta or --fast-forward replaces: its immutable_uri when it
// has no WAL content, so that reading it leaves no -wal or -shm file behind.
std::string at_rest_uri(const std::string& path);

// The whole-database checksum of what the database at `path` holds, its
// WAL included, in one read transaction.
uint64_t database_checksum(const std::string& path);

// A snapshot file written to an anonymous spool file, ready to upload.
struct SpooledSnapshot {
  UniqueFd fd;
  uint64_t size = 0;
  format::FileHeader header;
  uint64_t checksum = 0;
};

// Spools a snapshot of the state `db`'s open read transaction sees (the
// caller began it) as TXID `txid`. The spool lives in `spool_dir`. If
// `page_hashes` is not null it receives every page's hash (index pgno - 1,
// 0 for the lock page), which is what replicate keeps. `commit_time_ms`:
// the snapshot's time (the clock of a caller that injects one), else now.
SpooledSnapshot spool_snapshot(sqlite::Database& db, uint64_t txid, int zstd_level, bool progress,
                               const std::string& spool_dir, std::vector<uint64_t>* page_hashes,
                               std::optional<uint64_t> commit_time_ms = std::nullopt);

}  // namespace walship
