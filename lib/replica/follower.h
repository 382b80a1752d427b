// `walship serve-replica`: a live local copy of a replica that readers open
// read-only (DESIGN.md, "Serve-replica"). The Follower restores PATH if it is
// missing, then applies every delta of the replica to it in ONE SQLite write
// transaction through sqlite_dbpage (pages and size together), checking the
// chain rule and the delta's whole-database checksum before COMMIT, so a
// reader never sees a torn transaction.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "backends/storage.h"

namespace walship {

struct FollowOptions {
  std::string db_path;
  int64_t poll_interval_ms = 1000;   // GET of the next L0 delta
  int64_t list_interval_ms = 60000;  // LIST: catch up through compacted levels, notice re-seeds
  uint32_t checkpoint_pages = 1000;  // PASSIVE checkpoint of PATH's WAL past this many frames
  int parallelism = 4;               // downloads in flight while catching up
  bool quiet = false;
};

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

// Shared between the follower loop and the HTTP listener.
class FollowMonitor {
 public:
  FollowStatus snapshot() const {
    std::lock_guard lock(m_mutex);
    return m_status;
  }
  template <typename F>
  void update(F&& f) {
    std::lock_guard lock(m_mutex);
    f(m_status);
  }

 private:
  mutable std::mutex m_mutex;
  FollowStatus m_status;
};

// True while a serve-replica process follows into the database whose state
// directory ("<db>-walship") this is: it holds "<dir>/serve.lock". replicate
// refuses such a database (serve-replica is its only writer).
bool followed_by_serve_replica(const std::string& state_dir);

// Runs until SIGTERM/SIGINT, then returns 0. Throws UsageError when PATH
// cannot be followed (another walship process writes or replicates it, not a
// WAL database, no replica at the URL) and Failure when following fails for
// good (a corrupt replica). Transient storage errors are retried at the next
// poll and reported through the monitor.
int run_serve_replica(const FollowOptions& options, Storage& storage, FollowMonitor& monitor);

}  // namespace walship
