// What serve-replica reports on /healthz and /metrics (DESIGN.md,
// "Serve-replica"): the follower's status and pure functions that turn it
// into lag, its /healthz entry and Prometheus samples, tested without sockets.
#pragma once

#include <cstdint>
#include <string>

#include "lib/replica/counting_storage.h"
#include "lib/replica/status_report.h"
#include "lib/util/prometheus_text.h"

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
  uint64_t apply_errors = 0;
  uint64_t errors = 0;  // failed polls (storage errors and files that do not apply)
  StorageCounts storage;
  std::string last_error;
};

// Lag, as /healthz reports it: transactions known on the replica and not yet
// applied, and seconds. When caught up the seconds are the age of the last
// successful check (how stale the answer "nothing new" may be); when behind,
// the age of the oldest known unapplied commit, if that is older.
using FollowLag = DatabaseLag;
FollowLag follow_lag(const FollowStatus& status, uint64_t now_ms);

// The follower's /healthz entry: healthy once it reached the replica, when
// its last poll had no error and the lag is at most max_lag_ms.
DatabaseHealth follow_health(const FollowStatus& status, uint64_t now_ms, int64_t max_lag_ms);

// Adds the follower's samples (label db=PATH) to `out`.
void add_follow_metrics(PrometheusText& out, const FollowStatus& status, uint64_t now_ms);

// Shared between the follower loop and the HTTP listener.
class FollowMonitor : public StatusMonitor<FollowStatus> {
 public:
  // The status now, with the storage counters filled in.
  FollowStatus snapshot() const {
    std::lock_guard lock(m_mutex);
    FollowStatus status = m_status;
    status.storage = m_storage.load();
    return status;
  }
  StorageCounters& storage_counters() { return m_storage; }

 private:
  StorageCounters m_storage;
};

}  // namespace walship
