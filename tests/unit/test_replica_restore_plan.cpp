#include <doctest.h>

#include <map>
#include <optional>
#include <set>

#include "lib/format/keys.h"
#include "lib/replica/restore_plan.h"

using namespace walship;

namespace {

// A replica described by its objects; headers come from this table, so the
// planner runs without storage.
struct FakeReplica {
  std::vector<ObjectInfo> objects;
  std::map<std::string, format::FileHeader> headers;
  int fetches = 0;

  void snapshot(uint64_t txid, uint64_t time_ms) {
    const std::string key = format::snapshot_key(txid);
    objects.push_back({key, 100});
    headers[key] = {format::FileKind::snapshot, 4096, txid, txid, 10, time_ms, 0};
  }
  void delta(int level, uint64_t min, uint64_t max, uint64_t time_ms, uint64_t size = 10) {
    const std::string key = level == 0 ? format::l0_delta_key(min) : format::delta_key(level, min, max);
    objects.push_back({key, size});
    headers[key] = {format::FileKind::delta, 4096, min, max, 10, time_ms, 0};
  }
  HeaderCache cache() {
    return HeaderCache([this](const std::string& key) {
      ++fetches;
      return headers.at(key);
    });
  }
  RestorePlan plan(const RestoreTarget& target) {
    HeaderCache headers_cache = cache();
    return plan_restore(parse_listing(objects), target, headers_cache, "file:///r");
  }
};

// chain_from_point over the fake replica: the keys, or {} for nullopt.
std::vector<std::string> keys_from_point(FakeReplica& r, uint64_t from, uint64_t target) {
  HeaderCache headers = r.cache();
  const std::optional<DeltaChain> chain = chain_from_point(parse_listing(r.objects), from, target, headers);
  std::vector<std::string> keys;
  if (!chain) return keys;
  CHECK(chain->txid == target);
  for (const auto& d : chain->deltas) keys.push_back(d.key);
  return keys;
}

std::vector<std::string> keys_of(const RestorePlan& plan) {
  std::vector<std::string> keys{plan.snapshot.key};
  for (const auto& d : plan.deltas) keys.push_back(d.key);
  return keys;
}

}  // namespace

TEST_CASE("the latest restore of a snapshot-only replica uses the newest snapshot") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.snapshot(2, 2000);
  const RestorePlan plan = r.plan({});
  CHECK(plan.snapshot.txid == 2);
  CHECK(plan.deltas.empty());
  CHECK(plan.txid == 2);
  CHECK(plan.commit_time_ms == 2000);
}

TEST_CASE("a restore to a TXID uses the newest snapshot at or before it") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.snapshot(2, 2000);
  r.snapshot(3, 3000);
  CHECK(r.plan({2, {}}).snapshot.txid == 2);
  CHECK_THROWS_WITH_AS(r.plan({7, {}}), doctest::Contains("TXID 0000000000000007 is not a restore point"),
                       Failure);
}

TEST_CASE("a restore to a time picks the last point at or before it") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(0, 2, 2, 2000);
  r.delta(0, 3, 3, 3000);
  const RestorePlan plan = r.plan({{}, 2500});
  CHECK(plan.txid == 2);
  CHECK(plan.commit_time_ms == 2000);
  CHECK_THROWS_WITH_AS(r.plan({{}, 500}), doctest::Contains("no restore point at or before time"), Failure);
}

TEST_CASE("the planner prefers the highest level that reaches without overshooting") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 9; ++t) r.delta(0, t, t, t * 1000);
  r.delta(1, 2, 5, 5000);
  r.delta(1, 6, 9, 9000);
  r.delta(2, 2, 9, 9000);
  CHECK(keys_of(r.plan({})) == std::vector<std::string>{format::snapshot_key(1), format::delta_key(2, 2, 9)});
  CHECK(keys_of(r.plan({7, {}})) ==
        std::vector<std::string>{format::snapshot_key(1), format::delta_key(1, 2, 5), format::l0_delta_key(6),
                                 format::l0_delta_key(7)});
  CHECK(keys_of(r.plan({{}, 5500})) ==
        std::vector<std::string>{format::snapshot_key(1), format::delta_key(1, 2, 5)});
}

TEST_CASE("L0 deltas carrying several TXIDs chain by the max in their header") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(0, 2, 4, 2000);
  r.delta(0, 5, 9, 3000);
  const RestorePlan plan = r.plan({});
  CHECK(plan.txid == 9);
  CHECK(plan.deltas.size() == 2);
  CHECK(plan.deltas[1].max_txid == 9);
  CHECK_THROWS_AS(r.plan({3, {}}), Failure);  // inside an L0 batch: not a restore point
}

TEST_CASE("a newer snapshot shortens the chain") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 6; ++t) r.delta(0, t, t, t * 1000);
  r.snapshot(5, 5000);
  CHECK(keys_of(r.plan({})) == std::vector<std::string>{format::snapshot_key(5), format::l0_delta_key(6)});
  CHECK(r.plan({4, {}}).snapshot.txid == 1);
}

TEST_CASE("a replica without snapshots cannot be restored") {
  FakeReplica r;
  r.delta(0, 2, 2, 2000);
  CHECK_THROWS_WITH_AS(r.plan({}), doctest::Contains("has no snapshot"), Failure);
}

TEST_CASE("unknown objects in the prefix are ignored") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.objects.push_back({"lease", 10});
  r.objects.push_back({"snapshots/notes.txt", 10});
  const ReplicaListing listing = parse_listing(r.objects);
  CHECK(listing.snapshots.size() == 1);
  CHECK(listing.deltas.empty());
}

TEST_CASE("a follower at a TXID catches up through the compacted levels from there, in few files") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 121; ++t) r.delta(0, t, t, t * 1000);
  r.delta(1, 2, 61, 61'000);
  r.delta(1, 62, 121, 121'000);
  r.delta(2, 2, 121, 121'000);
  HeaderCache headers = r.cache();
  const ReplicaListing listing = parse_listing(r.objects);
  // From the start of a compacted file: the widest one.
  DeltaChain chain = chain_deltas(listing, 1, 121, std::nullopt, headers);
  REQUIRE(chain.deltas.size() == 1);
  CHECK(chain.deltas[0].key == format::delta_key(2, 2, 121));
  CHECK(chain.txid == 121);
  // From the middle of one: L0 files up to the next compacted boundary, then L1.
  chain = chain_deltas(listing, 58, 121, std::nullopt, headers);
  REQUIRE(chain.deltas.size() == 4);
  CHECK(chain.deltas[2].key == format::l0_delta_key(61));
  CHECK(chain.deltas[3].key == format::delta_key(1, 62, 121));
  CHECK(chain.txid == 121);
  CHECK(chain.commit_time_ms == 121'000);
  // Nothing starts after the newest TXID: an empty chain that stays put.
  chain = chain_deltas(listing, 121, 200, std::nullopt, headers);
  CHECK(chain.deltas.empty());
  CHECK(chain.txid == 121);
}

TEST_CASE("two compacted files of one level from the same TXID: the longer one is tried first") {
  // After a prune deleted L0 7, compaction may write L3 2-6 next to L3 2-7.
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(3, 2, 7, 7000);
  r.delta(3, 2, 6, 6000);
  r.delta(0, 8, 8, 8000);
  for (const auto& objects : {r.objects, std::vector<ObjectInfo>(r.objects.rbegin(), r.objects.rend())}) {
    FakeReplica ordered = r;
    ordered.objects = objects;
    RestoreTarget seven;
    seven.txid = 7;
    CHECK(keys_of(ordered.plan(seven)) ==
          std::vector<std::string>{format::snapshot_key(1), format::delta_key(3, 2, 7)});
    RestoreTarget six;
    six.txid = 6;
    CHECK(keys_of(ordered.plan(six)) ==
          std::vector<std::string>{format::snapshot_key(1), format::delta_key(3, 2, 6)});
    CHECK(ordered.plan({}).txid == 8);
  }
}

TEST_CASE("excluding a bad compacted file makes the planner chain the L0 deltas it covers") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 5; ++t) r.delta(0, t, t, t * 1000);
  r.delta(1, 2, 5, 5000);
  HeaderCache headers = r.cache();
  const ReplicaListing listing = parse_listing(r.objects);
  CHECK(plan_restore(listing, {}, headers, "file:///r").deltas.size() == 1);
  const std::set<std::string> bad{format::delta_key(1, 2, 5)};
  const RestorePlan plan = plan_restore(exclude_objects(listing, bad), {}, headers, "file:///r");
  CHECK(plan.txid == 5);
  CHECK(keys_of(plan) == std::vector<std::string>{format::snapshot_key(1), format::l0_delta_key(2),
                                                  format::l0_delta_key(3), format::l0_delta_key(4),
                                                  format::l0_delta_key(5)});
}

TEST_CASE("an undecodable header names its object, so planning can go around it") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(0, 2, 2, 2000);
  // A junk object named as the next L0 delta: its header does not decode.
  r.objects.push_back({format::l0_delta_key(3), 10});
  HeaderCache headers([&r](const std::string& key) -> format::FileHeader {
    if (key == format::l0_delta_key(3)) throw Failure("corrupt replica file '" + key + "': bad magic");
    return r.headers.at(key);
  });
  const ReplicaListing listing = parse_listing(r.objects);
  std::string bad_key;
  try {
    plan_restore(listing, {}, headers, "file:///r");
  } catch (const BadObjectError& e) {
    bad_key = e.key();
  }
  CHECK(bad_key == format::l0_delta_key(3));
  const RestorePlan plan = plan_restore(exclude_objects(listing, {bad_key}), {}, headers, "file:///r");
  CHECK(plan.txid == 2);
}

TEST_CASE("a copy of another delta under the next TXID's name is a bad object") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(0, 2, 2, 2000);
  r.objects.push_back({format::l0_delta_key(3), 10});
  r.headers[format::l0_delta_key(3)] = r.headers[format::l0_delta_key(2)];
  HeaderCache headers = r.cache();
  CHECK_THROWS_AS(plan_restore(parse_listing(r.objects), {}, headers, "file:///r"), BadObjectError);
}

TEST_CASE("a missing delta fails the latest restore naming the newest, the newest reachable and the gap") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t : {2, 3, 5}) r.delta(0, t, t, t * 1000);  // L0 4 is missing
  std::string message;
  try {
    r.plan({});
  } catch (const UnreachableNewestError& e) {
    message = e.what();
  }
  CHECK(
      message ==
      "the newest TXID 0000000000000005 of replica 'file:///r' is not reachable: no delta starts at TXID "
      "0000000000000004 (missing); the newest reachable is 0000000000000003 (1970-01-01T00:00:03.000Z): pass "
      "--allow-older to restore it, or run walship verify file:///r");
  RestoreTarget older;
  older.allow_older = true;
  const RestorePlan plan = r.plan(older);
  CHECK(plan.txid == 3);
  CHECK(plan.newest_txid == 5);
  CHECK(plan.commit_time_ms == 3000);
}

TEST_CASE("an explicit TXID or time target is not held to the newest TXID") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t : {2, 3, 5}) r.delta(0, t, t, t * 1000);
  CHECK(r.plan({3, {}}).txid == 3);
  CHECK(r.plan({3, {}}).newest_txid == 0);
  CHECK_THROWS_WITH_AS(r.plan({5, {}}), doctest::Contains("TXID 0000000000000005 is not a restore point"),
                       Failure);
  CHECK(r.plan({{}, 9000}).txid == 3);  // the last point at or before the time that a chain reaches
}

TEST_CASE("excluded bad objects claim the TXIDs their keys name, and the gap names them") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 4; ++t) r.delta(0, t, t, t * 1000);
  r.snapshot(5, 5000);
  r.objects.push_back({format::l0_delta_key(5), 10});  // a junk L0 whose header does not decode
  HeaderCache headers([&r](const std::string& key) -> format::FileHeader {
    if (key == format::l0_delta_key(5)) throw Failure("corrupt replica file '" + key + "': bad magic");
    return r.headers.at(key);
  });
  const ReplicaListing listing = parse_listing(r.objects);
  const std::set<std::string> bad{format::snapshot_key(5), format::l0_delta_key(5)};
  CHECK(claimed_newest_txid(listing, bad, headers) == 5);
  CHECK_THROWS_WITH_AS(plan_restore(listing, {}, headers, "file:///r", bad),
                       doctest::Contains("snapshots/0000000000000005.snap, deltas/L0/0000000000000005.delta "
                                         "are broken; the newest reachable is 0000000000000004"),
                       UnreachableNewestError);
  RestoreTarget older;
  older.allow_older = true;
  const RestorePlan plan = plan_restore(listing, older, headers, "file:///r", bad);
  CHECK(plan.txid == 4);
  CHECK(plan.snapshot.txid == 1);
  CHECK(plan.newest_txid == 5);
}

TEST_CASE(
    "junk or a stray copy under the next TXID's name claims nothing; a genuine object whose body broke "
    "does") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 4; ++t) r.delta(0, t, t, t * 1000);
  r.objects.push_back({format::l0_delta_key(5), 10});
  r.objects.push_back({format::snapshot_key(6), 10});
  bool junk = true;
  HeaderCache headers([&](const std::string& key) -> format::FileHeader {
    if (junk && key != format::l0_delta_key(4) && r.headers.find(key) == r.headers.end())
      throw Failure("corrupt replica file '" + key + "': bad magic");
    return r.headers.at(key);
  });
  const ReplicaListing listing = parse_listing(r.objects);
  const std::set<std::string> bad{format::l0_delta_key(5), format::snapshot_key(6)};
  // Junk: headers that do not decode.
  CHECK(claimed_newest_txid(listing, bad, headers) == 4);
  RestorePlan plan = plan_restore(listing, {}, headers, "file:///r", bad);
  CHECK(plan.txid == 4);
  CHECK(plan.newest_txid == 4);

  // Stray copies: headers that name other TXIDs than their keys.
  r.headers[format::l0_delta_key(5)] = r.headers[format::l0_delta_key(4)];
  r.headers[format::snapshot_key(6)] = r.headers[format::snapshot_key(1)];
  HeaderCache copies = r.cache();
  CHECK(claimed_newest_txid(listing, bad, copies) == 4);
  CHECK(plan_restore(listing, {}, copies, "file:///r", bad).txid == 4);

  // Genuine objects whose bodies broke: their TXIDs were written, and are lost.
  r.delta(0, 5, 5, 5000);
  r.objects.pop_back();  // already listed
  HeaderCache genuine = r.cache();
  CHECK(claimed_newest_txid(listing, bad, genuine) == 5);
  CHECK_THROWS_AS(plan_restore(listing, {}, genuine, "file:///r", bad), UnreachableNewestError);
}

TEST_CASE("a TXID the newer snapshot's chain misses is reached from an older snapshot") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t : {2, 3, 4, 6}) r.delta(0, t, t, t * 1000);  // L0 5 is gone...
  r.delta(1, 2, 6, 6000);                                      // ...under an L1 that spans it
  r.snapshot(4, 4000);
  const RestorePlan plan = r.plan({6, {}});
  CHECK(plan.txid == 6);
  CHECK(plan.snapshot.txid == 1);
  HeaderCache headers = r.cache();
  const std::optional<RestorePlan> partial = plan_partial(parse_listing(r.objects), 6, headers);
  REQUIRE(partial);
  CHECK(partial->txid == 6);
}

TEST_CASE("a replica whose every snapshot is bad says so, not to write a first one") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(0, 2, 2, 2000);
  HeaderCache headers = r.cache();
  CHECK_THROWS_WITH_AS(
      plan_restore(parse_listing(r.objects), {}, headers, "file:///r", {format::snapshot_key(1)}),
      "replica 'file:///r' has no whole snapshot to restore from: "
      "snapshots/0000000000000001.snap is broken; run walship verify file:///r",
      Failure);
}

TEST_CASE("a bad compacted file with its L0 deltas still there is no gap") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 5; ++t) r.delta(0, t, t, t * 1000);
  r.delta(1, 2, 5, 5000);
  HeaderCache headers = r.cache();
  const RestorePlan plan =
      plan_restore(parse_listing(r.objects), {}, headers, "file:///r", {format::delta_key(1, 2, 5)});
  CHECK(plan.txid == 5);
  CHECK(plan.newest_txid == 5);
  CHECK(plan.deltas.size() == 4);
}

TEST_CASE(
    "when the newest snapshot's chain stops short, an older snapshot's compacted chain reaches the newest") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 9; ++t) {
    if (t != 7) r.delta(0, t, t, t * 1000);  // L0 7 is gone, but L2 2-9 covers it
  }
  r.delta(2, 2, 9, 9000);
  r.snapshot(5, 5000);
  const RestorePlan plan = r.plan({});
  CHECK(plan.txid == 9);
  CHECK(keys_of(plan) == std::vector<std::string>{format::snapshot_key(1), format::delta_key(2, 2, 9)});
}

TEST_CASE("a local copy at a point takes just the deltas after it") {
  FakeReplica r;
  r.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 10; ++t) r.delta(0, t, t, t * 1000);
  CHECK(keys_from_point(r, 7, 10) ==
        std::vector<std::string>{format::l0_delta_key(8), format::l0_delta_key(9), format::l0_delta_key(10)});
  CHECK(keys_from_point(r, 1, 2) == std::vector<std::string>{format::l0_delta_key(2)});
}

TEST_CASE("a merged file whose range holds the point is applied whole when its L0 deltas are gone") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(1, 2, 20, 20'000);
  r.delta(0, 21, 21, 21'000);
  r.delta(0, 22, 22, 22'000);
  CHECK(keys_from_point(r, 7, 22) == std::vector<std::string>{format::delta_key(1, 2, 20),
                                                              format::l0_delta_key(21),
                                                              format::l0_delta_key(22)});
  // The point at the merged file's last TXID: it is not needed.
  CHECK(keys_from_point(r, 20, 22) ==
        std::vector<std::string>{format::l0_delta_key(21), format::l0_delta_key(22)});
  // Nor one that would overshoot the target.
  CHECK(keys_from_point(r, 7, 19).empty());
}

TEST_CASE("from a point, the chain of fewest bytes wins, overlapping or not") {
  FakeReplica cheap_merge;
  cheap_merge.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 40; ++t) cheap_merge.delta(0, t, t, t * 1000, 10);
  cheap_merge.delta(2, 2, 40, 40'000, 100);
  CHECK(keys_from_point(cheap_merge, 10, 40) == std::vector<std::string>{format::delta_key(2, 2, 40)});

  FakeReplica dear_merge;
  dear_merge.snapshot(1, 1000);
  for (uint64_t t = 2; t <= 40; ++t) dear_merge.delta(0, t, t, t * 1000, 10);
  dear_merge.delta(2, 2, 40, 40'000, 10'000);
  const std::vector<std::string> keys = keys_from_point(dear_merge, 35, 40);
  CHECK(keys.size() == 5);
  CHECK(keys.front() == format::l0_delta_key(36));
}

TEST_CASE("an L0 delta of several TXIDs that holds the point is read by its header") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(0, 2, 4, 4000);
  r.delta(0, 5, 8, 8000);
  r.delta(0, 9, 9, 9000);
  CHECK(keys_from_point(r, 6, 9) ==
        std::vector<std::string>{format::l0_delta_key(5), format::l0_delta_key(9)});
}

TEST_CASE("no chain from a point past the target, at it, or before a gap") {
  FakeReplica r;
  r.snapshot(1, 1000);
  r.delta(0, 2, 2, 2000);
  r.delta(0, 4, 4, 4000);  // 3 is missing
  CHECK(keys_from_point(r, 2, 2).empty());
  CHECK(keys_from_point(r, 4, 2).empty());
  CHECK(keys_from_point(r, 1, 4).empty());
  CHECK(keys_from_point(r, 3, 4) == std::vector<std::string>{format::l0_delta_key(4)});
}
