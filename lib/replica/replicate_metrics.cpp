#include "lib/replica/replicate_metrics.h"

#include <algorithm>

#include "lib/wal/wal_scan.h"

namespace walship {

void DurationHistogram::observe(double seconds) {
  size_t i = 0;
  while (i < k_bounds.size() && seconds > k_bounds[i]) ++i;
  ++counts[i];
  sum += seconds;
}

ReplicateLag replicate_lag(const ReplicateStatus& status, uint64_t now_ms) {
  ReplicateLag lag;
  bool pending = status.oldest_unshipped_ms != 0;
  if (status.change_known && status.wal_change) {
    // The counter wraps; a jump "backwards" means SQLite rebuilt the index
    // (the count restarted): nothing is known to be pending then.
    const uint32_t ahead = *status.wal_change - status.shipped_change;
    lag.transactions = ahead < 0x8000'0000u ? ahead : 0;
    pending = lag.transactions > 0;
  }
  if (!pending) return lag;
  // A commit walship did not see happen (no file event yet) is at most as
  // old as the last successful step.
  const uint64_t since = status.oldest_unshipped_ms != 0 ? status.oldest_unshipped_ms : status.last_ok_ms;
  if (since != 0 && since < now_ms) lag.seconds = static_cast<double>(now_ms - since) / 1000.0;
  return lag;
}

DatabaseHealth replicate_health(const ReplicateStatus& status, uint64_t now_ms, int64_t max_lag_ms) {
  const ReplicateLag lag = replicate_lag(status, now_ms);
  DatabaseHealth h =
      database_health(status.db_path, "replicate", status.started, status.last_error, lag, max_lag_ms);
  if (status.fenced) h.status = "fenced";
  h.warnings = status.warnings;
  h.warnings.insert(h.warnings.end(), status.storage_warnings.begin(), status.storage_warnings.end());

  for (const ReplicaShipped& r : status.replicas) {
    h.txid = h.replicas.empty() ? r.txid : std::min(h.txid, r.txid);
    h.replicas.emplace_back(r.url, r.txid);
  }
  return h;
}

void add_replicate_metrics(PrometheusText& out, const ReplicateStatus& status, uint64_t now_ms) {
  const ReplicateLag lag = replicate_lag(status, now_ms);
  const MetricLabels db = {{"db", status.db_path}};
  for (const ReplicaShipped& r : status.replicas) {
    out.gauge("walship_shipped_txid", "Newest TXID durable in the replica (replicate).",
              {{"db", status.db_path}, {"replica", r.url}}, r.txid);
  }
  out.gauge("walship_lag_transactions", k_help_lag_transactions, db, lag.transactions);
  out.gauge_seconds("walship_last_ship_timestamp_seconds",
                    "When a delta or snapshot of the database last became durable in a replica (0: never).",
                    db, static_cast<double>(status.last_ship_ms) / 1000.0);
  out.gauge_seconds("walship_lag_seconds", k_help_lag_seconds, db, lag.seconds);
  out.histogram(
      "walship_commit_to_durable_seconds",
      "Seconds from walship noticing a commit in the WAL to its delta being durable in every replica.", db,
      DurationHistogram::k_bounds, status.commit_to_durable.counts, status.commit_to_durable.sum);
  out.counter("walship_shipped_deltas_total", "L0 deltas shipped (one TXID each), summed over replicas.", db,
              status.shipped_deltas);
  out.counter("walship_shipped_transactions_total", "SQLite transactions shipped, summed over replicas.", db,
              status.shipped_transactions);
  out.counter("walship_shipped_pages_total", "Pages in shipped deltas, summed over replicas.", db,
              status.shipped_pages);
  out.counter("walship_checkpoints_total", k_help_checkpoints, {{"db", status.db_path}, {"mode", "passive"}},
              status.checkpoints_passive);
  out.counter("walship_checkpoints_total", k_help_checkpoints, {{"db", status.db_path}, {"mode", "truncate"}},
              status.checkpoints_truncate);
  out.counter("walship_snapshots_total", "Snapshots written (initial, scheduled, after lost continuity).", db,
              status.snapshots);
  out.counter("walship_compactions_total", "Compacted (L1-L3) delta files written.", db, status.compactions);
  out.counter("walship_pruned_objects_total", "Replica objects deleted by retention.", db,
              status.pruned_objects);
  out.counter("walship_lost_continuity_total",
              "Times the WAL moved on without walship (checkpoint or restore behind its back, restart after "
              "the app checkpointed): the database was rehashed.",
              db, status.lost_continuity);
  out.counter("walship_step_errors_total", "Replication steps that failed (retried).", db,
              status.step_errors);
  for (const auto& [backend, counts] : status.storage)
    add_storage_metrics(out, status.db_path, backend, counts);
}

ReplicateMonitor::ReplicateMonitor(const std::string& db_path) { m_status.db_path = db_path; }

StorageCounters& ReplicateMonitor::storage_counters(const std::string& backend) {
  std::lock_guard lock(m_mutex);
  std::unique_ptr<StorageCounters>& counters = m_storage[backend];
  if (!counters) counters = std::make_unique<StorageCounters>();
  return *counters;
}

ReplicateStatus ReplicateMonitor::snapshot() const {
  ReplicateStatus status;
  std::lock_guard lock(m_mutex);
  status = m_status;
  for (const auto& [backend, counters] : m_storage) status.storage.emplace_back(backend, counters->load());
  status.wal_change = read_counter_locked();
  return status;
}

std::optional<uint32_t> ReplicateMonitor::commit_counter() const {
  std::lock_guard lock(m_mutex);
  return read_counter_locked();
}

// The commits SQLite counted so far: a read of the -shm header, the one bit
// of I/O of a scrape, under the lock so that the Replicator cannot close the
// descriptor meanwhile (none lent: the count is unknown).
std::optional<uint32_t> ReplicateMonitor::read_counter_locked() const {
  if (m_shm_fd < 0) return std::nullopt;
  try {
    if (const auto index = wal::read_wal_index_header(m_shm_fd, m_status.db_path + "-shm"))
      return index->change;
  } catch (const std::exception&) {
    // unreadable: unknown
  }
  return std::nullopt;
}

void ReplicateMonitor::lend_shm(int fd) {
  std::lock_guard lock(m_mutex);
  m_shm_fd = fd;
}

}  // namespace walship
