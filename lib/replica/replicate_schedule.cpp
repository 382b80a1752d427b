#include "lib/replica/replicate_schedule.h"

namespace walship::schedule {

bool is_due(const Entry& e, int64_t now) { return !e.busy && e.due(now) <= now; }

int wait_ms(const Entries& entries, int64_t now) {
  int64_t next = INT64_MAX;
  for (const auto& e : entries) {
    if (!e->busy) next = std::min(next, e->due(now));
  }
  if (next == INT64_MAX) return -1;
  return static_cast<int>(std::clamp<int64_t>(next - now, 0, 3'600'000));
}

void start_step(Entry& e, int64_t now) {
  e.busy = true;
  ++e.steps;
  e.dirty = false;
  e.last_start = now;
  e.poll_due = now + k_safety_poll_ms;
  e.covering_ms = e.changed_ms;
  e.changed_ms = 0;
}

void step_now(Entry& e, int64_t now) { e.timer_due = e.timer_due ? std::min(*e.timer_due, now) : now; }

bool mark_changed(Entry& e, uint64_t now) {
  e.dirty = true;
  if (e.changed_ms != 0) return false;
  e.changed_ms = now;
  return e.covering_ms == 0;
}

uint64_t end_step(Entry& e, bool failed) {
  e.busy = false;
  const uint64_t covered = e.covering_ms;
  e.covering_ms = 0;
  if (failed && covered != 0) e.changed_ms = covered;
  return covered;
}

void step_succeeded(Entry& e, std::optional<int64_t> timer, uint64_t shipped_pages, int64_t now) {
  e.failures = 0;
  e.timer_due = timer;
  if (now >= e.flood_window_start + e.interval_ms) {
    e.flooding = shipped_pages - e.flood_window_pages >= k_flood_pages;
    e.flood_window_start = now;
    e.flood_window_pages = shipped_pages;
  }
}

int64_t step_failed(Entry& e, int64_t now) {
  e.failures += 1;
  const int64_t delay = std::min<int64_t>(k_max_retry_ms, int64_t{1000} << std::min(e.failures - 1, 6));
  e.retry_due = now + delay;
  return delay;
}

}  // namespace walship::schedule
