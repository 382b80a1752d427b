// What can be tuned per replicated database (command line, walship.toml).
// Defaults and limits: lib/config/option_defs.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/config/option_defs.h"
#include "lib/replica/retention.h"

namespace walship {

struct CompactionLevel {
  int level = 1;                           // 1..3
  int64_t span_ms = k_default_l1_span_ms;  // a file covers the deltas committed in one such UTC-aligned span
};

struct ReplicatorOptions {
  std::string db_path;
  int64_t snapshot_interval_ms = k_default_snapshot_interval_ms;  // 0: never on a schedule
  uint32_t checkpoint_pages = k_default_checkpoint_pages;  // PASSIVE checkpoint past this many WAL frames
  uint32_t truncate_pages = k_default_truncate_pages;      // TRUNCATE past this many
  bool enable_wal = false;                                 // switch a rollback-journal database to WAL
  int delta_zstd_level = k_default_delta_zstd_level;
  int snapshot_zstd_level = k_default_snapshot_zstd_level;
  // Default: L1 per minute, L2 per hour, L3 per day. Empty: no compaction.
  std::vector<CompactionLevel> compaction = {
      {1, k_default_l1_span_ms}, {2, k_default_l2_span_ms}, {3, k_default_l3_span_ms}};
  // Compaction and retention run on a thread of their own, so shipping never
  // waits for them (Replicator::maintain); false runs them within the step,
  // which tests on a simulated clock need.
  bool compact_in_background = true;
  // Retention (prune) of each replica this replicator holds the tip of,
  // every retention_interval_ms (DESIGN.md, "Retention").
  bool retention_enabled = true;
  RetentionPolicy retention = default_retention_policy();
  int64_t retention_interval_ms = k_default_retention_interval_ms;
  // The lease of each replica (lease.h): renewed every third of the TTL.
  int64_t lease_ttl_ms = k_default_lease_ttl_ms;
  // Take the lease even from a live holder (fencing it), and let a node
  // whose replica moved on without it make its data the newest.
  bool take_over = false;
};

}  // namespace walship
