#include <doctest.h>

#include <algorithm>
#include <random>
#include <set>

#include "backends/memory/memory_storage.h"
#include "lib/format/keys.h"
#include "lib/replica/compaction.h"
#include "lib/replica/list_points.h"
#include "lib/replica/prune.h"
#include "lib/replica/restore.h"
#include "lib/replica/verify.h"
#include "lib/util/log.h"
#include "tests/unit/replica_builder.h"

using namespace walship;
using walship::test::ReplicaBuilder;

namespace {

constexpr uint64_t k_t0 = 1'795'000'000'000;  // 2026-11-17T...Z, a round minute
constexpr uint64_t k_minute = 60'000;

std::set<uint64_t> txids(const std::vector<RetentionPoint>& points) {
  std::set<uint64_t> out;
  for (const RetentionPoint& p : points) out.insert(p.txid);
  return out;
}

std::set<uint64_t> listed_points(Storage& storage) {
  std::set<uint64_t> out;
  for (const RestorePoint& p : list_restore_points(storage, 4)) out.insert(p.txid);
  return out;
}

// Restores `txid` and checks the database holds the rows it held then.
void check_restores(Storage& storage, const ReplicaBuilder& builder, uint64_t txid) {
  CAPTURE(txid);
  RestoreOptions options;
  options.output_path = builder.scratch() + "/restored.db";
  options.force = true;
  options.quiet = true;
  options.target.txid = txid;
  const RestoreResult result = run_restore(options, storage);
  CHECK(result.txid == txid);
  CHECK(test::count_rows(options.output_path) == builder.rows_at().at(txid));
}

// Three hours of a commit every 20 s, compacted as replicate does, with an
// hourly snapshot. Returns every point ever written with its time.
std::vector<RetentionPoint> build_three_hours(MemoryStorage& storage, ReplicaBuilder& builder) {
  std::vector<RetentionPoint> all;
  uint64_t t = k_t0;
  builder.commit(t);
  all.push_back({1, t, true});
  for (int i = 1; i < 3 * 180; ++i) {
    t += 20'000;
    builder.commit(t);
    all.push_back({builder.txid(), t, false});
    if (i % 180 == 0) {
      builder.snapshot(t);
      all.back().snapshot = true;
    }
    builder.compact(t);
  }
  (void)storage;
  return all;
}

RetentionPolicy small_policy() {
  RetentionPolicy p;
  p.keep_within_ms = 10 * k_minute;
  p.keep_minutely = 30;
  p.keep_hourly = 2;
  return p;
}

}  // namespace

TEST_CASE("prune keeps exactly the points the policy picks, and each of them restores") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  const std::vector<RetentionPoint> all = build_three_hours(storage, builder);
  const size_t objects_before = storage.list("").size();

  PruneOptions options;
  options.policy = small_policy();
  const PruneResult result = run_prune(options, storage);
  CHECK(result.deleted > 0);
  CHECK(storage.list("").size() == objects_before - result.deleted);

  // The policy over every point ever written picks the same points.
  const std::set<uint64_t> expected = txids(apply_policy(all, options.policy).keep);
  CHECK(txids(result.plan.points.keep) == expected);
  // Every kept point is still a restore point and restores to its rows.
  const std::set<uint64_t> listed = listed_points(storage);
  for (uint64_t txid : expected) {
    CHECK(listed.count(txid) == 1);
    check_restores(storage, builder, txid);
  }
  // Whatever else is left is a restore point kept by the same objects
  // (the snapshot a kept chain starts from), and it restores too.
  for (uint64_t txid : listed) {
    if (!expected.count(txid)) check_restores(storage, builder, txid);
  }
  VerifyOptions verify;
  verify.quiet = true;
  CHECK(run_verify(verify, storage).healthy());

  // Pruning again deletes nothing.
  CHECK(run_prune(options, storage).deleted == 0);
}

TEST_CASE("prune --dry-run deletes nothing and says what would go and why") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build_three_hours(storage, builder);
  const auto before = storage.list("");
  PruneOptions options;
  options.policy = small_policy();
  options.dry_run = true;
  const PruneResult result = run_prune(options, storage);
  CHECK(storage.list("") == before);
  CHECK(result.deleted == 0);
  REQUIRE(!result.plan.remove.empty());
  const std::string text = render_prune(result, options.policy, true, false);
  CHECK(text.find("policy          keep-within 10m, keep-minutely 30, keep-hourly 2") != std::string::npos);
  for (const PruneObject& o : result.plan.remove) {
    CHECK(text.find("would delete " + o.key + "  (") != std::string::npos);
  }
  CHECK(text.find("keep   point ") != std::string::npos);
  CHECK(text.find("remove point ") != std::string::npos);
}

TEST_CASE("retention works on a snapshot-only replica (cron)") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  std::vector<RetentionPoint> all;
  // A snapshot every 6 hours for 10 days; each is its own TXID.
  for (int i = 0; i < 40; ++i) {
    const uint64_t t = k_t0 + static_cast<uint64_t>(i) * 6 * 60 * k_minute;
    if (i == 0) {
      builder.commit(t);
    } else {
      builder.commit(t);  // an L0 delta, then a snapshot at the same TXID...
      storage.remove({format::l0_delta_key(builder.txid())});  // ...but cron ships snapshots only
      builder.snapshot(t);
    }
    all.push_back({builder.txid(), t, true});
  }
  RetentionPolicy policy;
  policy.keep_last = 3;
  policy.keep_daily = 4;
  PruneOptions options;
  options.policy = policy;
  const PruneResult result = run_prune(options, storage);
  const std::set<uint64_t> expected = txids(apply_policy(all, policy).keep);
  CHECK(expected.size() < all.size() / 4);
  CHECK(txids(result.plan.points.keep) == expected);
  CHECK(listed_points(storage) == expected);
  CHECK(storage.list("deltas/").empty());
  for (uint64_t txid : expected) check_restores(storage, builder, txid);
}

TEST_CASE("prune killed at random moments never leaves a kept point unrestorable (20 rounds)") {
  set_log_level(LogLevel::error);
  MemoryStorage original;
  ReplicaBuilder builder(original);
  build_three_hours(original, builder);
  PruneOptions options;
  options.policy = small_policy();
  options.dry_run = true;
  const PrunePlan plan = run_prune(options, original).plan;
  REQUIRE(plan.remove.size() > 20);
  options.dry_run = false;

  std::mt19937 random(20261201);
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    MemoryStorage storage;
    for (const ObjectInfo& o : original.list("")) {
      MemorySink sink;
      original.get(o.key, sink);
      MemorySource source(sink.data());
      storage.put(o.key, source);
    }
    // The process dies just before its k-th delete: everything after it never happens.
    const size_t kill_at = std::uniform_int_distribution<size_t>(0, plan.remove.size() - 1)(random);
    size_t removes = 0;
    storage.set_fault_hook([&](std::string_view op, const std::string&) {
      if (op == "remove" && removes++ == kill_at) throw StorageError("killed", false);
    });
    CHECK_THROWS_AS(run_prune(options, storage), StorageError);
    storage.set_fault_hook({});

    VerifyOptions verify;
    verify.quiet = true;
    const VerifyReport report = run_verify(verify, storage);
    CHECK(report.healthy());
    const std::set<uint64_t> listed = listed_points(storage);
    for (const RetentionPoint& p : plan.points.keep) CHECK(listed.count(p.txid) == 1);
    // Spot-check restores of a few kept points (all of them take a while).
    for (size_t i = 0; i < plan.points.keep.size(); i += 17) {
      check_restores(storage, builder, plan.points.keep[i].txid);
    }
    // The next prune finishes the job, keeping the same points.
    const PruneResult again = run_prune(options, storage);
    CHECK(txids(again.plan.points.keep) == txids(plan.points.keep));
    CHECK(storage.list("").size() == plan.keep.size());
  }
}

TEST_CASE("prune deletes nothing from a replica whose chain is broken") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  for (int i = 0; i < 10; ++i) builder.commit(k_t0 + static_cast<uint64_t>(i) * k_minute);
  storage.remove({format::l0_delta_key(5)});
  const auto before = storage.list("");
  PruneOptions options;
  options.policy.keep_within_ms = 0;
  options.policy.keep_minutely = 0;
  options.policy.keep_hourly = 0;
  options.policy.keep_daily = 0;
  options.policy.keep_weekly = 0;
  options.policy.keep_monthly = 0;
  options.policy.keep_last = 1;
  CHECK_THROWS_WITH_AS(run_prune(options, storage),
                       doctest::Contains("prune deletes nothing from a damaged replica; run walship verify"),
                       Failure);
  CHECK(storage.list("") == before);
}

TEST_CASE("prune refuses an empty policy") {
  MemoryStorage storage;
  PruneOptions options;
  options.policy = RetentionPolicy{};
  CHECK_THROWS_AS(run_prune(options, storage), UsageError);
}

TEST_CASE("after a prune, compaction never writes again over deltas a higher level covers") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build_three_hours(storage, builder);
  PruneOptions options;
  options.policy = small_policy();
  run_prune(options, storage);
  const std::vector<ObjectInfo> before = storage.list("");
  // covered[l]: the highest TXID a file of level l or above reaches.
  uint64_t covered[4] = {0, 0, 0, 0};
  for (const DeltaEntry& d : list_replica(storage).deltas) {
    for (int l = 0; l <= d.level; ++l) covered[l] = std::max(covered[l], d.max_txid);
  }
  REQUIRE(covered[1] > 0);
  // What a replicator restarting (or reloading after its own prune) does.
  Compactor compactor;
  HeaderCache headers(storage);
  compactor.load(list_replica(storage), headers);
  ReplicatorOptions replicator;
  compactor.run(storage, replicator, static_cast<int64_t>(k_t0 + 86'400'000), builder.scratch());
  for (const ObjectInfo& o : storage.list("")) {
    if (std::find(before.begin(), before.end(), o) != before.end()) continue;
    const auto info = format::parse_key(o.key);
    REQUIRE(info);
    CAPTURE(o.key);
    CHECK(info->min_txid > covered[info->level]);
  }
  VerifyOptions verify;
  verify.quiet = true;
  CHECK(run_verify(verify, storage).healthy());
}

TEST_CASE("deltas under a kept L2 whose L1 was pruned are not compacted again") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  const uint64_t hour = k_t0 - k_t0 % 3'600'000;
  builder.commit(hour + 10'000);      // snapshot 1
  builder.commit(hour + 20'000);      // L0 2
  builder.commit(hour + 30'000);      // L0 3
  builder.commit(hour + 3'610'000);   // L0 4, the next hour
  builder.compact(hour + 3'615'000);  // L1 2-3 and L2 2-3
  REQUIRE(storage.list("deltas/L2/").size() == 1);
  PruneOptions options;
  options.policy = RetentionPolicy{};
  options.policy.keep_within_ms = 2 * 3'600'000;
  run_prune(options, storage);
  // Point 3 restores through L2 2-3, point 2 through L0 2: L1 2-3 and L0 3 go.
  CHECK(storage.list("deltas/L1/").empty());
  const std::vector<ObjectInfo> before = storage.list("");
  Compactor compactor;
  HeaderCache headers(storage);
  compactor.load(list_replica(storage), headers);
  ReplicatorOptions replicator;
  compactor.run(storage, replicator, static_cast<int64_t>(hour + 2 * 3'600'000), builder.scratch());
  // Only L0 4 was left to compact: nothing may start at TXID 2 again.
  for (const ObjectInfo& o : storage.list("deltas/")) {
    if (std::find(before.begin(), before.end(), o) != before.end()) continue;
    CAPTURE(o.key);
    CHECK(format::parse_key(o.key)->min_txid == 4);
  }
  VerifyOptions verify;
  verify.quiet = true;
  CHECK(run_verify(verify, storage).healthy());
}

TEST_CASE("the replicator's prune: only at the TXID it shipped, deleting in plan order, one object a call") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build_three_hours(storage, builder);
  const auto before = storage.list("");
  PruneOptions options;
  options.policy = small_policy();

  // Another writer moved the tip on: nothing is planned, nothing deleted.
  options.only_if_newest = [&](uint64_t newest) { return newest == builder.txid() - 1; };
  const PruneResult skipped = prune_replica(options, storage);
  CHECK(skipped.skipped);
  CHECK(skipped.newest == builder.txid());
  CHECK(skipped.plan.remove.empty());
  CHECK(storage.list("") == before);

  options.only_if_newest = [&](uint64_t newest) { return newest == builder.txid(); };
  std::vector<std::string> deleted;
  options.on_deleted = [&](const PruneObject& o) { deleted.push_back(o.key); };
  const size_t removes_before = storage.count("remove");
  const PruneResult result = prune_replica(options, storage);
  CHECK_FALSE(result.skipped);
  REQUIRE(result.deleted > 0);
  CHECK(storage.count("remove") - removes_before == result.deleted);
  // prune's kill-safe order: newest end point first, higher levels first at equal ends.
  std::vector<std::string> planned;
  for (const PruneObject& o : result.plan.remove) planned.push_back(o.key);
  CHECK(deleted == planned);
  for (size_t i = 1; i < result.plan.remove.size(); ++i) {
    const PruneObject& a = result.plan.remove[i - 1];
    const PruneObject& b = result.plan.remove[i];
    CHECK(a.end_txid >= b.end_txid);
    if (a.end_txid == b.end_txid && a.key.starts_with("deltas/") && b.key.starts_with("deltas/"))
      CHECK(a.key.substr(0, 9) >= b.key.substr(0, 9));  // "deltas/L3" before "deltas/L0"
  }
}
