// `walship snapshot DB URL`: a consistent full image of a live database,
// written as the next TXID of the replica.
#pragma once

#include <cstdint>
#include <string>

#include "backends/storage.h"

namespace walship {

struct SnapshotOptions {
  std::string db_path;
  int zstd_level = 3;
  bool quiet = false;  // no progress bar
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

}  // namespace walship
