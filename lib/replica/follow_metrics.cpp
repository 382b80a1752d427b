#include "lib/replica/follow_metrics.h"

#include <algorithm>

namespace walship {

FollowLag follow_lag(const FollowStatus& status, uint64_t now_ms) {
  FollowLag lag;
  lag.transactions =
      status.replica_txid > status.applied_txid ? status.replica_txid - status.applied_txid : 0;
  uint64_t since = status.last_check_ms;
  if (lag.transactions > 0 && status.next_commit_ms != 0) since = std::min(since, status.next_commit_ms);
  lag.seconds = since == 0 || since > now_ms ? 0.0 : static_cast<double>(now_ms - since) / 1000.0;
  return lag;
}

DatabaseHealth follow_health(const FollowStatus& status, uint64_t now_ms, int64_t max_lag_ms) {
  const FollowLag lag = follow_lag(status, now_ms);
  DatabaseHealth h = database_health(status.db_path, "serve-replica", status.last_check_ms != 0,
                                     status.last_error, lag, max_lag_ms);
  h.txid = status.applied_txid;

  if (!status.replica.empty()) h.replicas.emplace_back(status.replica, status.replica_txid);
  return h;
}

void add_follow_metrics(PrometheusText& out, const FollowStatus& status, uint64_t now_ms) {
  const FollowLag lag = follow_lag(status, now_ms);
  const MetricLabels db = {{"db", status.db_path}};
  out.gauge("walship_replica_txid", "Newest TXID known to be on the replica a follower follows.", db,
            status.replica_txid);
  out.gauge("walship_applied_txid", "TXID the follower database is at.", db, status.applied_txid);
  out.gauge_seconds("walship_applied_commit_timestamp_seconds",
                    "Commit time on the writer of the applied TXID (Unix seconds).", db,
                    static_cast<double>(status.applied_commit_ms) / 1000.0);
  out.gauge("walship_lag_transactions", k_help_lag_transactions, db, lag.transactions);
  out.gauge_seconds("walship_lag_seconds", k_help_lag_seconds, db, lag.seconds);
  out.counter("walship_applied_deltas_total", "Deltas a follower applied, each in one transaction.", db,
              status.applied_deltas);
  out.counter("walship_applied_pages_total", "Pages written by a follower's applied deltas and re-seeds.", db,
              status.applied_pages);
  out.counter("walship_reseeds_total",
              "Follower re-seeds from a snapshot after lost continuity on the writer.", db, status.reseeds);
  out.counter("walship_apply_errors_total", "Replica files that failed to apply (nothing was changed).", db,
              status.apply_errors);
  out.counter("walship_follow_errors_total",
              "Polls of a follower that failed (the replica unreachable, or a file that does not apply); "
              "the log has one line per distinct error per minute.",
              db, status.errors);
  out.counter("walship_checkpoints_total", k_help_checkpoints, {{"db", status.db_path}, {"mode", "passive"}},
              status.checkpoints);
  add_storage_metrics(out, status.db_path, status.backend, status.storage);
}

}  // namespace walship
