// `walship status`: how far each replica of a database is from the database,
// without a running walship: the local TXID (what this node shipped, from
// DB-walship/), the transactions in the WAL not shipped yet, and each
// replica's newest TXID and commit time (one LIST and one header read).
// The verdict and rendering are pure, tested without disks or clocks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/storage/storage.h"

namespace walship {

// What was found about one (database, replica) pair.
struct ReplicaProbe {
  std::string db;
  std::string replica;                 // redacted URL
  std::optional<uint64_t> local_txid;  // shipped from this node (DB-walship/); nullopt: no state
  uint64_t unshipped_commits = 0;      // whole transactions in the WAL after the shipped position
  bool replica_empty = true;
  uint64_t replica_txid = 0;       // newest TXID on the replica
  uint64_t replica_commit_ms = 0;  // its commit time: the last ship
  std::string error;               // the replica could not be asked; empty: none
  // Who writes the replica (lease.h): "free", "released by ...", "held by ..."
  // or "expired: ..."; empty when it could not be asked.
  std::string lease;
};

// One row of `walship status`.
struct ReplicaVerdict {
  std::string status;  // "ok", "lagging", "behind" (the replica lacks what was shipped), "empty", "failing"
  uint64_t lag_transactions = 0;
  double lag_seconds = 0;  // at most this old: now - the last ship, when something is unshipped
  bool healthy() const { return status == "ok"; }
};

// Pure: lag and status of a probe at `now_ms`; "lagging" when a commit may
// have waited longer than `max_lag_ms`.
ReplicaVerdict judge_replica(const ReplicaProbe& probe, uint64_t now_ms, int64_t max_lag_ms);

// One LIST and one header read of the replica, the local state of
// `db_path` for it, and a scan of the WAL's unshipped part. Errors of the
// replica are caught into `error`.
ReplicaProbe probe_replica(const std::string& db_path, Storage& storage);

// A table for people and JSON for scripts; `healthy` is set when every row is.
std::string render_status_table(const std::vector<ReplicaProbe>& probes, uint64_t now_ms, int64_t max_lag_ms,
                                bool& healthy);
std::string render_status_json(const std::vector<ReplicaProbe>& probes, uint64_t now_ms, int64_t max_lag_ms,
                               bool& healthy);

}  // namespace walship
