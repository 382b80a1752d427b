// What `replicate --http` reports on /healthz and /metrics for each database
// it replicates: the status the Replicator and the replicate loop update (a
// few times per shipped delta, never per page), and pure functions that turn
// it into lag, a /healthz entry and Prometheus samples.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/replica/counting_storage.h"
#include "lib/replica/status_report.h"
#include "lib/util/prometheus_text.h"
#include "lib/util/time.h"

namespace walship {

// Seconds from a commit to its delta being durable in every replica.
struct DurationHistogram {
  static constexpr std::array<double, 10> k_bounds = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  std::array<uint64_t, k_bounds.size() + 1> counts{};  // the last: past every bound
  double sum = 0;
  void observe(double seconds);
};

struct ReplicaShipped {
  std::string url;    // redacted
  uint64_t txid = 0;  // newest TXID durable there (0: none yet)
};

// Counters only grow.
struct ReplicateStatus {
  std::string db_path;
  std::vector<ReplicaShipped> replicas;
  std::vector<std::pair<std::string, StorageCounts>> storage;  // by backend; filled by snapshot()
  bool started = false;  // the first step succeeded (snapshot, resume or rehash done)
  // Commits are counted with SQLite's wal-index change counter (one per
  // commit): every commit counted before `shipped_change` is durable in every
  // replica. `wal_change` is the counter when the status was read.
  bool change_known = false;
  uint32_t shipped_change = 0;
  std::optional<uint32_t> wal_change;
  uint64_t oldest_unshipped_ms = 0;   // when walship noticed the oldest WAL change not yet shipped (0: none)
  uint64_t last_ok_ms = 0;            // when the last successful step ended
  uint64_t last_ship_ms = 0;          // when a delta or snapshot last became durable (0: never)
  uint64_t shipped_deltas = 0;        // L0 deltas (one TXID each)
  uint64_t shipped_transactions = 0;  // SQLite transactions in them
  uint64_t shipped_pages = 0;
  uint64_t checkpoints_passive = 0;
  uint64_t checkpoints_truncate = 0;
  uint64_t snapshots = 0;
  uint64_t compactions = 0;  // compacted (L1-L3) files written
  uint64_t pruned_objects = 0;
  uint64_t lost_continuity = 0;  // rehashes that shipped a difference or a new snapshot
  uint64_t step_errors = 0;
  std::string last_error;                     // of the last step; empty when it succeeded
  bool fenced = false;                        // another writer has the replica: never stepped again
  std::vector<std::string> warnings;          // shown on /healthz (DatabaseHealth::warnings)
  std::vector<std::string> storage_warnings;  // the replicas' Storage::warning(), as of the last step
  DurationHistogram commit_to_durable;
};

// Transactions committed and not yet durable in every replica, and the age
// of the oldest of them (0 when there are none).
using ReplicateLag = DatabaseLag;
ReplicateLag replicate_lag(const ReplicateStatus& status, uint64_t now_ms);

// The database's /healthz entry: healthy once started, when the last step had
// no error and the lag is at most max_lag_ms.
DatabaseHealth replicate_health(const ReplicateStatus& status, uint64_t now_ms, int64_t max_lag_ms);

// Adds the database's samples (label db=PATH) to `out`.
void add_replicate_metrics(PrometheusText& out, const ReplicateStatus& status, uint64_t now_ms);

// One replicated database's status, shared by the Replicator (a worker
// thread), the replicate loop and the HTTP listener.
class ReplicateMonitor : public StatusMonitor<ReplicateStatus> {
 public:
  explicit ReplicateMonitor(const std::string& db_path);

  // As StatusMonitor::update, and stamps last_ship_ms when `f` counted a
  // shipped delta or snapshot (so no caller has to).
  template <typename F>
  void update(F&& f) {
    std::lock_guard lock(m_mutex);
    const uint64_t shipped_before = m_status.shipped_deltas + m_status.snapshots;
    f(m_status);
    if (m_status.shipped_deltas + m_status.snapshots != shipped_before) m_status.last_ship_ms = now_ms();
  }

  // The counters for the replicas on `backend` ("file", "s3"...); the same
  // object for every call with that backend.
  StorageCounters& storage_counters(const std::string& backend);

  // The status now, with the storage counters and the WAL's change counter
  // (read from DB-shm through the lent descriptor) filled in.
  ReplicateStatus snapshot() const;
  // The WAL's change counter now (SQLite's commits so far), through the lent
  // descriptor; nullopt when none is lent or the index is unreadable. Any
  // thread: `walship sync` reads it when a request arrives.
  std::optional<uint32_t> commit_counter() const;

  // The Replicator lends the DB-shm descriptor it owns while its SQLite
  // connections are open, and takes it back (-1) before closing it. The
  // monitor never opens the file itself: closing any descriptor of DB-shm
  // drops every POSIX lock this process holds on it, the read locks of the
  // Replicator's connections among them (SQLite's locks are per process and
  // file), and the app could then restart the WAL over frames not shipped.
  void lend_shm(int fd);
  uint64_t shipped_deltas() const {
    std::lock_guard lock(m_mutex);
    return m_status.shipped_deltas;
  }

 private:
  std::map<std::string, std::unique_ptr<StorageCounters>> m_storage;
  std::optional<uint32_t> read_counter_locked() const;
  int m_shm_fd = -1;  // lent by the Replicator; guarded by m_mutex
};

}  // namespace walship
