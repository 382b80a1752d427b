// Every database one process replicates or follows, for its HTTP listener
// (`replicate --http`, `serve-replica --http`): /metrics is the Prometheus
// text of all of them (and the process_* samples), /healthz and /readyz one
// JSON body with an entry each.
// Thread-safe: databases are added while the listener serves (a directory's
// new databases), and each monitor is updated by its own thread.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include "lib/cloud/preemption_notice.h"
#include "lib/replica/follow_metrics.h"
#include "lib/replica/replicate_metrics.h"

namespace walship {

class StatusBoard {
 public:
  // The monitors live as long as the board.
  ReplicateMonitor& add_replicate(const std::string& db_path);
  FollowMonitor& add_follower();

  // Every database the process starts with is on the board: until then
  // /healthz is unhealthy, even with no database on it yet.
  void set_ready();

  // A preemption notice replicate received: counted on /metrics, with the
  // seconds left until the stop it announced.
  void record_notice(const PreemptionNotice& notice);

  std::string metrics(uint64_t now_ms) const;
  // The /healthz body; `healthy` is true when the board is ready and every
  // database is healthy.
  std::string health(uint64_t now_ms, int64_t max_lag_ms, bool& healthy) const;

 private:
  mutable std::mutex m_mutex;
  std::deque<ReplicateMonitor> m_replicate;
  std::deque<FollowMonitor> m_follow;
  bool m_ready = false;
  NoticeStatus m_notices;
};

}  // namespace walship
