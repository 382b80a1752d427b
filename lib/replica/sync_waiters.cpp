#include "lib/replica/sync_waiters.h"

#include <algorithm>

namespace walship {

bool sync_covered(const SyncTarget& target, uint64_t step, std::optional<uint32_t> covered) {
  if (!covered) return false;
  if (target.change) return static_cast<int32_t>(*covered - *target.change) >= 0;
  return step > target.steps_before;
}

void SyncWaiters::add(ControlRequest request, std::optional<uint32_t> change, uint64_t steps_started,
                      int64_t deadline_ms) {
  if (m_waiting.size() >= k_max_sync_waiters) {
    answer(request, "error " + std::to_string(k_max_sync_waiters) +
                        " requests already wait for this database: try again shortly");
    return;
  }
  // A counter behind one a step already covered: SQLite rebuilt the index
  // (its counter starts again), so only order can tell.
  if (change && m_last_covered && static_cast<int32_t>(*change - *m_last_covered) < 0) change.reset();
  m_waiting.push_back({std::move(request), {change, steps_started}, deadline_ms});
}

size_t SyncWaiters::step_ended(uint64_t step, std::optional<uint32_t> covered) {
  if (!covered) return 0;
  m_last_covered = covered;
  size_t answered = 0;
  for (Waiter& w : m_waiting) {
    if (!sync_covered(w.target, step, covered)) continue;
    answer(w.request, "ok");
    ++answered;
  }
  std::erase_if(m_waiting, [](const Waiter& w) { return !w.request.conn; });
  return answered;
}

void SyncWaiters::expire(int64_t now_ms, const std::string& why) {
  for (Waiter& w : m_waiting) {
    if (now_ms >= w.deadline_ms) answer(w.request, "timeout " + why);
  }
  std::erase_if(m_waiting, [](const Waiter& w) { return !w.request.conn; });
}

void SyncWaiters::answer_all(const std::string& line) {
  for (Waiter& w : m_waiting) answer(w.request, line);
  m_waiting.clear();
}

std::optional<int64_t> SyncWaiters::next_deadline() const {
  std::optional<int64_t> next;
  for (const Waiter& w : m_waiting) next = next ? std::min(*next, w.deadline_ms) : w.deadline_ms;
  return next;
}

}  // namespace walship
