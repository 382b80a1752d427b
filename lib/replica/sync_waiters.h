// The `sync` requests of one replicated database waiting until what was
// committed when each arrived is durable (DESIGN.md, "Waiting for
// durability"). Bookkeeping only: the loop (replicate_loop.cpp) reads the
// clock and the wal-index, runs the steps and hands their outcome here; the
// answers go out on the requests' connections.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/replica/control_socket.h"

namespace walship {

// At most this many requests wait per database; more are answered "error".
inline constexpr size_t k_max_sync_waiters = 10'000;

// What a request waits for.
struct SyncTarget {
  // The wal-index commit counter (iChange) when it arrived; nullopt: not
  // known (no index, or it went backwards: SQLite rebuilt it).
  std::optional<uint32_t> change;
  uint64_t steps_before = 0;  // steps of the database started before it arrived
};

// True if the step numbered `step` (steps are counted from 1 as they start),
// after which every replica holds every commit counted up to `covered`
// (Replicator::covered_change()), answers a request waiting for `target`:
// by the commit counter (serial arithmetic: it wraps), or, without one, by
// order (the step started after the request arrived). Pure.
bool sync_covered(const SyncTarget& target, uint64_t step, std::optional<uint32_t> covered);

class SyncWaiters {
 public:
  // A request arrived: `change`, the commit counter read just now;
  // `steps_started`, the database's steps so far. Answers "error" itself
  // when k_max_sync_waiters already wait.
  void add(ControlRequest request, std::optional<uint32_t> change, uint64_t steps_started,
           int64_t deadline_ms);
  // Step `step` ended with `covered` (see sync_covered): answers "ok" to the
  // requests it covers. Returns how many.
  size_t step_ended(uint64_t step, std::optional<uint32_t> covered);
  // Answers "timeout <why>" to the requests whose deadline is past.
  void expire(int64_t now_ms, const std::string& why);
  // Answers `line` to every request still waiting.
  void answer_all(const std::string& line);
  std::optional<int64_t> next_deadline() const;
  bool empty() const { return m_waiting.empty(); }
  size_t size() const { return m_waiting.size(); }

 private:
  struct Waiter {
    ControlRequest request;
    SyncTarget target;
    int64_t deadline_ms = 0;
  };
  std::vector<Waiter> m_waiting;
  std::optional<uint32_t> m_last_covered;  // the newest counter a step covered
};

}  // namespace walship
