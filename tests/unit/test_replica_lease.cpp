#include <doctest.h>
#include <unistd.h>

#include <algorithm>
#include <span>

#include "backends/memory/memory_storage.h"
#include "lib/format/keys.h"
#include "lib/replica/lease.h"
#include "lib/replica/process_metrics.h"
#include "lib/replica/prune.h"
#include "lib/replica/replica_listing.h"
#include "lib/util/byte_stream.h"
#include "lib/util/log.h"

using namespace walship;

namespace {

constexpr int64_t k_t0 = 1'795'000'000'000;
constexpr int64_t k_ttl = 30'000;

LeaseIdentity writer(const std::string& id, const std::string& host = "node-a", int64_t pid = 100) {
  LeaseIdentity me;
  me.writer = id;
  me.host = host;
  me.boot_id = "boot-" + host;
  me.pid_ns = "pid:[4026531836]";
  me.pid = pid;
  return me;
}

LeaseRecord held_by(const LeaseIdentity& holder, int64_t expires_ms) {
  LeaseRecord r;
  r.holder = holder;
  r.generation = 3;
  r.since_ms = k_t0;
  r.expires_ms = expires_ms;
  return r;
}

bool never_gone(const LeaseIdentity&) { return false; }
bool always_gone(const LeaseIdentity&) { return true; }

std::vector<uint64_t> lease_seqs(MemoryStorage& storage) {
  std::vector<uint64_t> seqs;
  for (const ObjectInfo& o : storage.list("lease/")) seqs.push_back(*format::parse_lease_key(o.key));
  return seqs;
}

// Several writers sharing one store and one fake clock.
struct World {
  MemoryStorage storage;
  int64_t now = k_t0;
  Lease make(const LeaseIdentity& me, bool take_over = false, Lease::Sleep sleep = {}) {
    if (!sleep) sleep = [this](int64_t ms) { now += ms; };
    return Lease(
        storage, k_ttl, take_over, [this] { return now; }, sleep, me);
  }
};

}  // namespace

TEST_SUITE_BEGIN("replica.lease");

TEST_CASE("a lease record round-trips and anything else is refused") {
  LeaseRecord r = held_by(writer("00112233aabbccdd"), k_t0 + k_ttl);
  r.released = true;
  r.fenced = true;
  r.holder.start = 123456;
  CHECK(decode_lease(encode_lease(r)) == r);
  // A record of a walship that did not write the start: unknown (0).
  std::string old = encode_lease(r);
  old.erase(old.find("start 123456\n"), 13);
  REQUIRE(decode_lease(old));
  CHECK(decode_lease(old)->holder.start == 0);
  old.erase(old.find("fenced true\n"), 12);
  REQUIRE(decode_lease(old));
  CHECK_FALSE(decode_lease(old)->fenced);
  CHECK_FALSE(decode_lease("").has_value());
  CHECK_FALSE(decode_lease("walship-state 1\nwriter x\n").has_value());
  std::string text = encode_lease(r);
  CHECK_FALSE(decode_lease(text.replace(text.find("released true"), 13, "released yes")).has_value());
}

TEST_CASE("who may take a lease, and whether the taker fences") {
  const LeaseIdentity me = writer("mine", "node-b", 200);
  const LeaseIdentity other = writer("other", "node-a", 100);
  auto decide = [&](const std::optional<LeaseRecord>& current, bool take_over = false,
                    bool (*gone)(const LeaseIdentity&) = never_gone) {
    return decide_lease(current, me, k_t0, take_over, gone);
  };

  CHECK(decide(std::nullopt).take);
  CHECK_FALSE(decide(std::nullopt).fence);
  LeaseRecord released = held_by(other, k_t0 + k_ttl);
  released.released = true;
  CHECK((decide(released).take && !decide(released).fence));

  const LeaseRecord live = held_by(other, k_t0 + k_ttl);
  CHECK_FALSE(decide(live).take);
  CHECK(decide(live, true).take);
  CHECK(decide(live, true).fence);  // the holder may still write: fenced
  // A pid on another machine says nothing, gone or not.
  CHECK_FALSE(decide(live, false, always_gone).take);

  const LeaseRecord expired = held_by(other, k_t0 - 1);
  CHECK(decide(expired).take);
  CHECK(decide(expired).fence);  // paused, not dead, maybe

  // A holder of this machine whose process is gone: taken at once, no fence.
  const LeaseRecord here = held_by(writer("old", "node-b", 150), k_t0 + k_ttl);
  CHECK_FALSE(decide(here).take);
  CHECK(decide(here, false, always_gone).take);
  CHECK_FALSE(decide(here, false, always_gone).fence);
  // ... or whose pid is ours now (a restarted container's pid 1).
  CHECK(decide(held_by(writer("old", "node-b", 200), k_t0 + k_ttl)).take);
  // Another pid namespace on the same kernel: its pids mean nothing here.
  LeaseIdentity container = writer("old", "node-b", 150);
  container.pid_ns = "pid:[4026532000]";
  CHECK_FALSE(decide(held_by(container, k_t0 + k_ttl), false, always_gone).take);
  // The same writer id in another process (a snapshot carrying on its
  // replicate's lineage) is not "ours": only the very same process is.
  LeaseIdentity lineage = me;
  lineage.pid = 300;
  CHECK_FALSE(decide(held_by(lineage, k_t0 + k_ttl)).take);
  CHECK(decide(held_by(me, k_t0 + k_ttl)).take);
}

TEST_CASE("a holder of this machine whose pid a later process reuses is gone; the live holder is not") {
  // The parent process (the test runner) plays a holder of this machine.
  LeaseIdentity parent = this_process();
  parent.writer = "parent";
  parent.pid = ::getppid();
  const std::optional<PidStat> stat = read_pid_stat(parent.pid);
  REQUIRE(stat);
  LeaseIdentity me = this_process();
  me.writer = "me";
  auto taken = [&](uint64_t start) {
    World w;
    parent.start = start;
    const std::string text = encode_lease(held_by(parent, w.now + k_ttl));
    MemorySource source(std::as_bytes(std::span(text)));
    REQUIRE(w.storage.put_if_absent(format::lease_key(1), source));
    Lease lease = w.make(me);
    const Lease::Taken t = lease.acquire(false);
    CHECK_FALSE(t.fence);
    return lease.held();
  };
  // The very process: alive, its lease held.
  CHECK_THROWS_AS(taken(stat->start_ticks), FencedError);
  // Its pid, another start: a later process; the holder is gone.
  CHECK(taken(stat->start_ticks + 1));
  // A record without a start (an older walship): the pid alone, alive.
  CHECK_THROWS_AS(taken(0), FencedError);
}

TEST_CASE("where a writer's first object goes: on after the newest, or at a fence") {
  CHECK_FALSE(first_txid_fence({}, 41, false, 3));
  CHECK(first_txid_fence({}, 41, true, 3) == fence_txid(3));
  // A fence whose snapshot never got written is completed at its TXID...
  CHECK(first_txid_fence({{41, fence_txid(2)}, {7, fence_txid(1)}}, 41, false, 2) == fence_txid(2));
  // ... and one that is not the newest's is history.
  CHECK_FALSE(first_txid_fence({{7, fence_txid(1)}}, 41, false, 2));
  // Never at or below what the replica holds (a writer without a lease went
  // past the fence): above it.
  CHECK(first_txid_fence({}, fence_txid(3) + 5, true, 3) == fence_txid(4));
  CHECK(first_txid_fence({}, 0, true, 1) == fence_txid(1));
}

TEST_CASE("the first writer takes a free lease, renews it a third of the TTL later, and releases it") {
  World w;
  Lease a = w.make(writer("a"));
  const Lease::Taken taken = a.acquire();
  CHECK_FALSE(taken.fence);
  CHECK_FALSE(taken.previous.has_value());
  CHECK(a.held());
  CHECK(a.generation() == 1);
  CHECK(lease_seqs(w.storage) == std::vector<uint64_t>{1});
  CHECK(a.renew_due_ms() == k_t0 + k_ttl / 3);
  a.renew_if_due(k_t0 + 1000);  // not due: nothing written
  CHECK(lease_seqs(w.storage) == std::vector<uint64_t>{1});
  w.now = k_t0 + k_ttl / 3;
  a.renew_if_due(w.now);
  CHECK(lease_seqs(w.storage) == std::vector<uint64_t>{1, 2});
  a.release();
  CHECK_FALSE(a.held());

  // The next writer starts at once, without a fence, one generation on.
  Lease b = w.make(writer("b", "node-b"));
  const Lease::Taken next = b.acquire();
  CHECK_FALSE(next.fence);
  REQUIRE(next.previous.has_value());
  CHECK(next.previous->released);
  CHECK(b.generation() == 2);
}

TEST_CASE("a second writer waits one TTL for a live lease and exits when its holder renewed") {
  World w;
  Lease a = w.make(writer("a"));
  a.acquire();
  int sleeps = 0;
  Lease b = w.make(writer("b", "node-b"), false, [&](int64_t ms) {
    ++sleeps;
    w.now += ms;
    a.renew_if_due(w.now);  // the holder is alive
  });
  CHECK_THROWS_AS(b.acquire(), FencedError);
  CHECK(sleeps == 1);
  try {
    b.acquire();
  } catch (const FencedError& e) {
    CHECK(std::string(e.what()).find("node-a pid 100 (writer a)") != std::string::npos);
    CHECK(e.code() == ExitCode::fenced);
  }
  CHECK_FALSE(b.held());
  CHECK(a.held());
}

TEST_CASE("a lease whose holder vanished is taken after its expiry, fenced") {
  World w;
  Lease a = w.make(writer("a"));
  a.acquire();
  Lease b = w.make(writer("b", "node-b"));
  const Lease::Taken taken = b.acquire();  // sleeps past the expiry: nobody renewed
  CHECK(w.now > k_t0 + k_ttl);
  CHECK(taken.fence);
  CHECK(b.generation() == 2);
  // The old holder comes back: its next record is taken, it is fenced.
  CHECK_THROWS_AS(a.renew_if_due(w.now), FencedError);
  CHECK_FALSE(a.held());
  CHECK_THROWS_AS(a.renew_if_due(w.now), FencedError);  // and stays so
  a.release();                                          // writes nothing
  b.renew_if_due(w.now + k_ttl);
  CHECK(b.held());
}

TEST_CASE("--take-over fences a live holder, whose next renewal fails") {
  World w;
  Lease a = w.make(writer("a"));
  a.acquire();
  w.now += 1000;
  Lease b = w.make(writer("b", "node-b"), true);
  const Lease::Taken taken = b.acquire();
  CHECK(taken.fence);
  CHECK(w.now == k_t0 + 1000);  // no wait
  CHECK_THROWS_AS(a.renew_if_due(k_t0 + k_ttl / 3), FencedError);
}

TEST_CASE("a renewal whose answer was lost and whose retry found its own record is no takeover") {
  World w;
  const LeaseIdentity me = writer("a");
  Lease a = w.make(me);
  a.acquire();
  w.now += k_ttl / 3;
  // The renewal's PUT landed, its answer did not: the retry finds seq 2 there.
  LeaseRecord landed;
  landed.holder = me;
  landed.generation = 1;
  landed.since_ms = k_t0;
  landed.expires_ms = w.now + k_ttl;
  const std::string text = encode_lease(landed);
  MemorySource source(std::as_bytes(std::span(text)));
  REQUIRE(w.storage.put_if_absent(format::lease_key(2), source));
  CHECK_NOTHROW(a.renew_if_due(w.now));
  CHECK(a.held());
  w.now += k_ttl / 3;
  a.renew_if_due(w.now);
  CHECK(lease_seqs(w.storage).back() == 3);
}

TEST_CASE("a holder whose lease expired with nobody taking it keeps it") {
  World w;
  Lease a = w.make(writer("a"));
  a.acquire();
  w.now += 5 * k_ttl;  // paused, say
  a.renew_if_due(w.now);
  CHECK(a.held());
  CHECK(lease_seqs(w.storage).back() == 2);
}

TEST_CASE("of two writers racing for one record, one wins and the other looks again") {
  World w;
  Lease a = w.make(writer("a"));
  bool raced = false;
  Lease b = w.make(writer("b", "node-b"), false, [&](int64_t ms) {
    w.now += ms;
    a.renew_if_due(w.now);
  });
  w.storage.set_fault_hook([&](std::string_view op, const std::string& key) {
    // Between b's read (no lease yet) and b's write, a takes the lease.
    if (op == "put_if_absent" && key == format::lease_key(1) && !raced) {
      raced = true;
      a.acquire();
    }
  });
  CHECK_THROWS_AS(b.acquire(), FencedError);  // b read again, waited, and a renewed: a is alive
  CHECK(raced);
  CHECK(a.held());
  CHECK_FALSE(b.held());
}

TEST_CASE("a reader sees the lease change hands between its LISTs, and waits for a taker's fence") {
  World w;
  LeaseWatch watch(w.storage);
  watch.listed(0);
  CHECK_FALSE(watch.holder_changed());  // no lease at all: nothing to tell
  Lease a = w.make(writer("a"));
  a.acquire();
  watch.listed(list_replica(w.storage).newest_lease_seq);
  CHECK_FALSE(watch.holder_changed());
  w.now += k_ttl / 3;
  a.renew_if_due(w.now);  // a renewal is no change
  CHECK_FALSE(watch.holder_changed());
  CHECK_FALSE(watch.fence_pending({}, w.now));

  // b takes over: the next look says so, and a LIST then waits for b's fence.
  Lease b = w.make(writer("b", "node-b"), true);
  CHECK(b.acquire().fence);
  CHECK(watch.holder_changed());
  watch.listed(list_replica(w.storage).newest_lease_seq);
  CHECK(watch.fence_pending({}, w.now));
  CHECK(watch.fence_pending({{5, fence_txid(b.generation() - 1)}}, w.now));  // an older takeover's
  CHECK_FALSE(watch.fence_pending({{5, fence_txid(b.generation())}}, w.now));
  CHECK_FALSE(watch.fence_pending({}, w.now + k_ttl + 1));  // a taker that died before its fence
  CHECK_FALSE(watch.holder_changed());

  // A clean handover writes no fence: nothing to wait for.
  b.release();
  Lease c = w.make(writer("c", "node-c"));
  CHECK_FALSE(c.acquire().fence);
  CHECK(watch.holder_changed());
  watch.listed(list_replica(w.storage).newest_lease_seq);
  CHECK_FALSE(watch.fence_pending({}, w.now));

  // Knowledge so old that the holder deleted the known record: a change
  // maybe, the reader LISTs.
  for (int i = 0; i < 30; ++i) {
    w.now += k_ttl / 3;
    c.renew_if_due(w.now);
  }
  LeaseWatch late(w.storage);
  late.listed(3);
  CHECK(late.holder_changed());
}

TEST_CASE("old lease records are deleted in batches; the newest two stay") {
  World w;
  Lease a = w.make(writer("a"));
  a.acquire();
  for (int i = 0; i < 40; ++i) {
    w.now += k_ttl / 3;
    a.renew_if_due(w.now);
  }
  const std::vector<uint64_t> seqs = lease_seqs(w.storage);
  CHECK(seqs.back() == 41);
  CHECK(seqs.size() <= 2 + 8);
  CHECK(seqs.size() >= 2);
}

TEST_CASE("objects behind a fence are superseded: no planner sees them") {
  const std::vector<ObjectInfo> objects = {
      {format::snapshot_key(1), 10},
      {format::l0_delta_key(2), 10},
      {format::l0_delta_key(3), 10},     // the old writer's, after the takeover at 2
      {format::delta_key(1, 2, 3), 10},  // compacted by the old writer over it
      {format::snapshot_key(3), 10},     // a snapshot it took
      {format::fence_key({2, fence_txid(2)}), 0},
      {format::snapshot_key(fence_txid(2)), 10},
      {format::l0_delta_key(fence_txid(2) + 1), 10},
      {format::lease_key(7), 100},
  };
  const ReplicaListing listing = parse_listing(objects);
  REQUIRE(listing.fences.size() == 1);
  CHECK(listing.fences[0] == format::FenceInfo{2, fence_txid(2)});
  std::vector<std::string> superseded;
  for (const SupersededEntry& o : listing.superseded) superseded.push_back(o.key);
  std::vector<std::string> expected = {format::delta_key(1, 2, 3), format::l0_delta_key(3),
                                       format::snapshot_key(3)};
  std::sort(expected.begin(), expected.end());
  CHECK(superseded == expected);
  REQUIRE(listing.snapshots.size() == 2);
  CHECK(listing.snapshots[1].txid == fence_txid(2));
  REQUIRE(listing.deltas.size() == 2);
  CHECK(listing.deltas[0].key == format::l0_delta_key(2));
  CHECK(listing.deltas[1].min_txid == fence_txid(2) + 1);
}

TEST_CASE("a fence object is empty, and written once") {
  MemoryStorage storage("memory://test");
  write_fence(storage, {41, fence_txid(2)});
  write_fence(storage, {41, fence_txid(2)});  // a retry: already there, nothing changes
  const std::vector<ObjectInfo> objects = storage.list("fences/");
  REQUIRE(objects.size() == 1);
  CHECK(objects[0].key == format::fence_key({41, fence_txid(2)}));
  CHECK(objects[0].size == 0);
}

TEST_CASE("prune deletes what a fenced writer wrote, whatever the policy keeps") {
  MemoryStorage storage("memory://test");
  const std::vector<ObjectInfo> objects = {
      {format::fence_key({2, fence_txid(2)}), 0},
      {format::l0_delta_key(3), 10},
      {format::snapshot_key(3), 20},
  };
  HeaderCache headers(storage);
  RetentionPolicy keep_all;
  keep_all.keep_last = 100;
  const PrunePlan plan = plan_prune(parse_listing(objects), headers, keep_all, "memory://test");
  std::vector<std::string> removed;
  for (const PruneObject& o : plan.remove) removed.push_back(o.key);
  std::sort(removed.begin(), removed.end());
  std::vector<std::string> expected = {format::l0_delta_key(3), format::snapshot_key(3)};
  std::sort(expected.begin(), expected.end());
  CHECK(removed == expected);
  CHECK(plan.remove_bytes == 30);
}

TEST_SUITE_END();
