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
#include "lib/replica/follow_metrics.h"

namespace walship {

struct FollowOptions {
  std::string db_path;
  int64_t poll_interval_ms = 1000;   // GET of the next L0 delta
  int64_t list_interval_ms = 60000;  // LIST: catch up through compacted levels, notice re-seeds
  uint32_t checkpoint_pages = 1000;  // PASSIVE checkpoint of PATH's WAL past this many frames
  int parallelism = 4;               // downloads in flight while catching up
  bool quiet = false;
};

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
