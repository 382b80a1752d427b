// When each database of `walship replicate` is due for a step, pure: the
// time is always a parameter, nothing here reads a clock, runs a step or
// touches a file. The loop (replicate_loop.cpp) asks which entries are due,
// starts their steps and reports the outcomes back here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "lib/config/option_defs.h"

namespace walship {

class Replicator;
class ReplicateMonitor;

namespace schedule {

// Without any file event, a database is still looked at this often: a local
// check of the WAL (no requests), in case an event was missed.
constexpr int64_t k_safety_poll_ms = 30'000;
// While the last sync interval shipped this many pages (8 MiB of 4 KiB
// pages) or more, steps come every quarter of the interval: in a write flood,
// smaller ships keep a commit's wait for the replica near the interval.
constexpr uint64_t k_flood_pages = 2048;
// Failed steps are retried after 1 s, 2 s, 4 s... up to this.
constexpr int64_t k_max_retry_ms = 60'000;

// One replicated database, as the loop schedules it.
struct Entry {
  std::unique_ptr<Replicator> replicator;
  ReplicateMonitor* monitor = nullptr;
  int64_t interval_ms = k_default_sync_interval_ms;
  bool from_directory = false;
  // Main-thread bookkeeping; the worker only touches `replicator` while busy.
  bool busy = false;
  bool dirty = true;
  bool flooding = false;  // the last interval shipped k_flood_pages or more
  int64_t flood_window_start = 0;
  uint64_t flood_window_pages = 0;  // shipped_pages() at flood_window_start
  int64_t last_start = 0;
  std::optional<int64_t> timer_due;
  int failures = 0;
  int64_t retry_due = 0;
  int64_t poll_due = 0;
  bool fatal = false;   // a usage error: never retried
  bool absent = false;  // waited for: not created (in WAL mode) yet
  bool warned_not_wal = false;
  uint64_t steps = 0;  // steps started (`walship sync` orders its requests by it)
  // For the lag on /metrics: when walship noticed the oldest change of the
  // WAL that no step has covered yet, and (while busy) the one the running
  // step covers. 0: none.
  uint64_t changed_ms = 0;
  uint64_t covering_ms = 0;

  // When the next step is due (INT64_MAX: never), ignoring `busy`: a
  // failure's retry; else the earliest of the safety poll, the sync interval
  // after the last start when the WAL changed (a quarter of it in a flood)
  // and the replicator's own timer (snapshots, retention).
  int64_t due(int64_t now) const {
    if (fatal || absent) return INT64_MAX;
    if (failures > 0) return retry_due;
    int64_t t = poll_due;
    if (dirty) t = std::min(t, std::max(now, last_start + (flooding ? interval_ms / 4 : interval_ms)));
    if (timer_due) t = std::min(t, *timer_due);
    return t;
  }
};

using Entries = std::vector<std::unique_ptr<Entry>>;

// True if `e` may start a step at `now`: not running one, and due.
bool is_due(const Entry& e, int64_t now);

// How long the loop may sleep at `now` before an idle entry is due: -1 if
// none ever is, else 0 to an hour.
int wait_ms(const Entries& entries, int64_t now);

// The step of `e` starts at `now`: it covers the changes noticed so far, and
// the next safety poll is due k_safety_poll_ms later.
void start_step(Entry& e, int64_t now);

// A request waits for the next step of `e` (a `walship sync`, a snapshot):
// it is due at `now`, whatever the sync interval (once a running step ends).
void step_now(Entry& e, int64_t now);

// The WAL of `e` changed at `now`. Returns true if this is now the oldest
// change no step covers (the lag on /metrics starts from it).
bool mark_changed(Entry& e, uint64_t now);

// The step of `e` ended; returns the time of the change it covered (0:
// none). A failed step's change is still unshipped, and older than any since.
uint64_t end_step(Entry& e, bool failed);

// The step of `e` succeeded at `now`: the replicator's next timer, and the
// flood rule from its shipped-pages counter, measured over one interval.
void step_succeeded(Entry& e, std::optional<int64_t> timer, uint64_t shipped_pages, int64_t now);

// The step of `e` failed at `now` and will be retried: returns the delay,
// doubling from 1 s with each failure in a row up to k_max_retry_ms.
int64_t step_failed(Entry& e, int64_t now);

}  // namespace schedule

}  // namespace walship
