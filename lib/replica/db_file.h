// Checks on a local database path before walship opens it, so that a wrong
// path gets a clear message instead of SQLite's "file is not a database".
#pragma once

#include <cstdint>
#include <string>

namespace walship {

// How long walship's one-off readers of an app's database (snapshot,
// restore --delta and --fast-forward) wait for the app's write lock.
inline constexpr int k_db_read_busy_timeout_ms = 10'000;

struct DbFileInfo {
  uint64_t size = 0;
  uint32_t page_size = 0;  // from the header
  bool wal_mode = false;   // header bytes 18/19 == 2
};

// Throws UsageError if `path` is missing, a directory, empty or not SQLite,
// and Failure if it cannot be read.
DbFileInfo check_db_file(const std::string& path);

}  // namespace walship
