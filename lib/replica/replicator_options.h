// What can be tuned per replicated database (command line, walship.toml).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/replica/retention.h"

namespace walship {

struct CompactionLevel {
  int level = 1;             // 1..3
  int64_t span_ms = 60'000;  // a file covers the deltas committed in one such UTC-aligned span
};

struct ReplicatorOptions {
  std::string db_path;
  int64_t snapshot_interval_ms = 24LL * 3600 * 1000;  // 0: never on a schedule
  uint32_t checkpoint_pages = 1000;                   // PASSIVE checkpoint past this many WAL frames
  uint32_t truncate_pages = 100'000;                  // TRUNCATE past this many
  bool enable_wal = false;                            // switch a rollback-journal database to WAL
  int delta_zstd_level = 1;
  int snapshot_zstd_level = 3;
  // Default: L1 per minute, L2 per hour, L3 per day. Empty: no compaction.
  std::vector<CompactionLevel> compaction = {{1, 60'000}, {2, 3'600'000}, {3, 86'400'000}};
  // Retention (prune) of each replica this replicator holds the tip of,
  // every retention_interval_ms (DESIGN.md, "Retention").
  bool retention_enabled = true;
  RetentionPolicy retention = default_retention_policy();
  int64_t retention_interval_ms = 3'600'000;
};

}  // namespace walship
