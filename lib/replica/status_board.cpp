#include "lib/replica/status_board.h"

#include <vector>

#include "lib/replica/process_metrics.h"

namespace walship {

ReplicateMonitor& StatusBoard::add_replicate(const std::string& db_path) {
  std::lock_guard lock(m_mutex);
  return m_replicate.emplace_back(db_path);
}

FollowMonitor& StatusBoard::add_follower() {
  std::lock_guard lock(m_mutex);
  return m_follow.emplace_back();
}

void StatusBoard::set_ready() {
  std::lock_guard lock(m_mutex);
  m_ready = true;
}

void StatusBoard::record_notice(const PreemptionNotice& notice) {
  std::lock_guard lock(m_mutex);
  ++m_notices.notices;
  m_notices.cloud = notice.cloud;
  if (notice.at_ms) m_notices.at_ms = notice.at_ms;
}

std::string StatusBoard::metrics(uint64_t now_ms) const {
  PrometheusText out;
  add_process_metrics(out, read_process_stats(), WALSHIP_VERSION);
  std::lock_guard lock(m_mutex);
  if (!m_replicate.empty()) add_notice_metrics(out, m_notices, now_ms);
  for (const ReplicateMonitor& m : m_replicate) add_replicate_metrics(out, m.snapshot(), now_ms);
  for (const FollowMonitor& m : m_follow) add_follow_metrics(out, m.snapshot(), now_ms);
  return out.str();
}

std::string StatusBoard::health(uint64_t now_ms, int64_t max_lag_ms, bool& healthy) const {
  std::vector<DatabaseHealth> databases;
  bool ready = false;
  {
    std::lock_guard lock(m_mutex);
    ready = m_ready;
    for (const ReplicateMonitor& m : m_replicate)
      databases.push_back(replicate_health(m.snapshot(), now_ms, max_lag_ms));
    for (const FollowMonitor& m : m_follow)
      databases.push_back(follow_health(m.snapshot(), now_ms, max_lag_ms));
  }
  std::string body = render_health(databases, healthy);
  if (!ready) {
    healthy = false;
    body = "{\"databases\":[],\"status\":\"starting\"}\n";
  }
  return body;
}

}  // namespace walship
