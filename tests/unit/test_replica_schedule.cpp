// The schedule of `walship replicate` (replicate_schedule.h): which database
// is due, the flood rule, retries and the safety poll, at times the test
// chooses.
#include <doctest.h>

#include "lib/replica/replicate_schedule.h"
#include "lib/replica/replicator.h"

using namespace walship;
using namespace walship::schedule;

namespace {

Entry entry(int64_t interval_ms = 1000) {
  Entry e;
  e.interval_ms = interval_ms;
  return e;
}

}  // namespace

TEST_CASE("a new database is due at once, and not again while its step runs") {
  Entry e = entry();
  CHECK(is_due(e, 0));
  start_step(e, 0);
  CHECK_FALSE(is_due(e, 0));
  CHECK_FALSE(is_due(e, 1'000'000));  // busy
}

TEST_CASE("an idle database is looked at by the safety poll only") {
  Entry e = entry();
  start_step(e, 5'000);
  end_step(e, false);
  step_succeeded(e, std::nullopt, 0, 5'100);
  CHECK(e.due(5'100) == 5'000 + k_safety_poll_ms);
  CHECK_FALSE(is_due(e, 5'000 + k_safety_poll_ms - 1));
  CHECK(is_due(e, 5'000 + k_safety_poll_ms));
}

TEST_CASE("a change is shipped one sync interval after the last step started") {
  Entry e = entry(1000);
  start_step(e, 10'000);
  end_step(e, false);
  step_succeeded(e, std::nullopt, 0, 10'050);
  CHECK(mark_changed(e, 10'200));
  CHECK_FALSE(is_due(e, 10'999));
  CHECK(is_due(e, 11'000));
  // A change long after the interval is due at once.
  Entry late = entry(1000);
  start_step(late, 0);
  end_step(late, false);
  step_succeeded(late, std::nullopt, 0, 10);
  mark_changed(late, 20'000);
  CHECK(late.due(20'000) == 20'000);
}

TEST_CASE("the replicator's timer makes a database due") {
  Entry e = entry();
  start_step(e, 0);
  end_step(e, false);
  step_succeeded(e, int64_t{7'000}, 0, 100);
  CHECK_FALSE(is_due(e, 6'999));
  CHECK(is_due(e, 7'000));
}

TEST_CASE("in a write flood, steps come every quarter of the interval") {
  Entry e = entry(1000);
  // The first interval shipped k_flood_pages: flooding.
  start_step(e, 0);
  end_step(e, false);
  step_succeeded(e, std::nullopt, k_flood_pages, 1'000);
  CHECK(e.flooding);
  mark_changed(e, 1'010);
  start_step(e, 1'010);
  end_step(e, false);
  step_succeeded(e, std::nullopt, k_flood_pages + 10, 1'100);  // within the window: unchanged
  CHECK(e.flooding);
  mark_changed(e, 1'120);
  CHECK(e.due(1'120) == 1'010 + 250);
  // The next interval shipped less: back to the whole interval.
  start_step(e, 2'000);
  end_step(e, false);
  step_succeeded(e, std::nullopt, 2 * k_flood_pages - 1, 2'000);
  CHECK_FALSE(e.flooding);
  mark_changed(e, 2'010);
  CHECK(e.due(2'010) == 3'000);
}

TEST_CASE("failed steps are retried after a doubling delay up to a minute, and success resets it") {
  Entry e = entry();
  std::vector<int64_t> delays;
  int64_t now = 0;
  for (int i = 0; i < 9; ++i) {
    start_step(e, now);
    end_step(e, true);
    delays.push_back(step_failed(e, now));
    CHECK(e.due(now) == now + delays.back());
    now += delays.back();
  }
  CHECK(delays == std::vector<int64_t>{1'000, 2'000, 4'000, 8'000, 16'000, 32'000, 60'000, 60'000, 60'000});
  // A retry is due even without a change, and a success ends the backoff.
  CHECK(is_due(e, now));
  start_step(e, now);
  end_step(e, false);
  step_succeeded(e, std::nullopt, 0, now);
  CHECK(e.failures == 0);
  CHECK(e.due(now) == now + k_safety_poll_ms);
}

TEST_CASE("a failed step's change stays the oldest unshipped one") {
  Entry e = entry();
  CHECK(mark_changed(e, 100));
  CHECK_FALSE(mark_changed(e, 150));  // still the first change
  start_step(e, 200);
  CHECK(e.covering_ms == 100);
  CHECK_FALSE(mark_changed(e, 300));  // the running step covers an older one
  CHECK(end_step(e, true) == 100);
  CHECK(e.changed_ms == 100);
  start_step(e, 1'200);
  CHECK(end_step(e, false) == 100);
  CHECK(e.changed_ms == 0);
}

TEST_CASE("fatal and absent databases are never due, and an empty loop sleeps until woken") {
  Entries entries;
  entries.push_back(std::make_unique<Entry>(entry()));
  entries.push_back(std::make_unique<Entry>(entry()));
  entries[0]->fatal = true;
  entries[1]->absent = true;
  CHECK(wait_ms(entries, 0) == -1);
  entries[1]->absent = false;
  CHECK(wait_ms(entries, 0) == 0);  // due at once
  start_step(*entries[1], 0);
  CHECK(wait_ms(entries, 0) == -1);  // busy: the step's end wakes the loop
  end_step(*entries[1], false);
  step_succeeded(*entries[1], std::nullopt, 0, 0);
  CHECK(wait_ms(entries, 10) == k_safety_poll_ms - 10);
  step_succeeded(*entries[1], int64_t{10'000'000}, 0, 0);
  entries[1]->poll_due = 10'000'000;
  CHECK(wait_ms(entries, 0) == 3'600'000);  // capped at an hour
}

TEST_CASE("a request makes a step due at once, whatever the interval, and after the running one") {
  Entry e = entry(60'000);
  start_step(e, 0);
  end_step(e, false);
  step_succeeded(e, std::nullopt, 0, 10);
  e.dirty = true;
  CHECK_FALSE(is_due(e, 100));  // the interval holds a change back
  step_now(e, 100);
  CHECK(is_due(e, 100));
  start_step(e, 100);
  CHECK(e.steps == 2);
  step_now(e, 150);
  CHECK_FALSE(is_due(e, 150));  // busy: the next starts once this one ends
  end_step(e, false);
  CHECK(is_due(e, 150));
}
