// What serve-replica reports on /healthz and /metrics (DESIGN.md,
// "Serve-replica"): the follower's status and pure functions that turn it
// into lag, a JSON health body and Prometheus text, tested without sockets.
#pragma once

#include <cstdint>
#include <string>

namespace walship {

// What /healthz and /metrics report. Counters only grow.
struct FollowStatus {
  std::string db_path;
  std::string replica;  // redacted URL
  std::string backend;  // URL scheme: file, s3, gs, sftp
  uint64_t applied_txid = 0;
  uint64_t applied_commit_ms = 0;  // commit time of applied_txid on the writer
  uint64_t replica_txid = 0;       // newest TXID known to exist on the replica
  uint64_t next_commit_ms = 0;     // commit time of a known, not yet applied delta (0: none)
  uint64_t last_check_ms = 0;      // when the replica was last asked successfully
  uint64_t applied_deltas = 0;
  uint64_t applied_pages = 0;
  uint64_t reseeds = 0;
  uint64_t checkpoints = 0;
  uint64_t storage_gets = 0;
  uint64_t storage_lists = 0;
  uint64_t storage_errors = 0;
  uint64_t downloaded_bytes = 0;
  uint64_t apply_errors = 0;
  std::string last_error;
};

// Lag, as /healthz reports it: transactions known on the replica and not yet
// applied, and seconds. When caught up the seconds are the age of the last
// successful check (how stale the answer "nothing new" may be); when behind,
// the age of the oldest known unapplied commit, if that is older.
struct FollowLag {
  uint64_t transactions = 0;
  double seconds = 0;
};
FollowLag follow_lag(const FollowStatus& status, uint64_t now_ms);

// Prometheus text format (version 0.0.4) for /metrics.
std::string format_metrics(const FollowStatus& status, uint64_t now_ms);
// The /healthz body (JSON) and whether it is healthy (lag under max_lag_ms).
std::string format_health(const FollowStatus& status, uint64_t now_ms, int64_t max_lag_ms, bool& healthy);

}  // namespace walship
