// A week of one write a minute through the real Replicator (shipping,
// compaction, scheduled snapshots, retention every hour) on a simulated
// clock, in seconds. The restore points left must be exactly the ones the
// policy picks from every point ever written, and each must restore.
//
// WALSHIP_SIM_DAYS and WALSHIP_SIM_STEP_S change the length and the write
// interval (the Performance numbers in README come from 30 days at 1 s);
// WALSHIP_SIM_REPORT=1 prints the storage and restore numbers.
#include <doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>

#include "backends/memory/memory_storage.h"
#include "lib/format/keys.h"
#include "lib/replica/list_points.h"
#include "lib/replica/prune.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/replicator.h"
#include "lib/replica/restore.h"
#include "lib/replica/restore_plan.h"
#include "lib/replica/verify.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/log.h"
#include "lib/util/time.h"
#include "tests/unit/replica_builder.h"
#include "tests/unit/support.h"

using namespace walship;

namespace {

// Forwards to a MemoryStorage the test keeps, counting what was written.
class L0CountingStorage : public test::BorrowedStorage {
 public:
  explicit L0CountingStorage(MemoryStorage& inner, uint64_t& l0_bytes, uint64_t& l0_objects)
      : BorrowedStorage(inner), m_l0_bytes(l0_bytes), m_l0_objects(l0_objects) {}
  void put(const std::string& key, ByteSource& data) override {
    count(key, data.size());
    BorrowedStorage::put(key, data);
  }
  bool put_if_absent(const std::string& key, ByteSource& data) override {
    const bool written = BorrowedStorage::put_if_absent(key, data);
    if (written) count(key, data.size());
    return written;
  }

 private:
  void count(const std::string& key, uint64_t size) {
    if (key.starts_with("deltas/L0/")) {
      m_l0_bytes += size;
      ++m_l0_objects;
    }
  }
  uint64_t& m_l0_bytes;
  uint64_t& m_l0_objects;
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

uint64_t total_bytes(MemoryStorage& storage) {
  uint64_t sum = 0;
  for (const ObjectInfo& o : storage.list("")) sum += o.size;
  return sum;
}

}  // namespace

TEST_CASE(
    "a simulated week of minutely writes through replicate + retention keeps exactly the policy's points") {
  set_log_level(LogLevel::warn);
  const int days = env_int("WALSHIP_SIM_DAYS", 7);
  const int step_s = env_int("WALSHIP_SIM_STEP_S", 60);
  const bool report = std::getenv("WALSHIP_SIM_REPORT") != nullptr;
  test::ScratchDir dir;
  const std::string db_path = dir.path() + "/app.db";
  sqlite::Database app(db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  test::init_wal_app(app, true);

  MemoryStorage storage("memory://week");
  uint64_t l0_bytes = 0;
  uint64_t l0_objects = 0;
  ReplicatorOptions options;
  options.db_path = db_path;
  options.retention = default_retention_policy();
  options.compact_in_background = false;  // the simulated clock decides when it is done
  std::vector<std::unique_ptr<Storage>> replicas;
  replicas.push_back(std::make_unique<L0CountingStorage>(storage, l0_bytes, l0_objects));
  Replicator replicator(options, std::move(replicas));

  const uint64_t t0 = 1'795'000'000'000 - 1'795'000'000'000 % 3'600'000;  // a round hour
  const auto steps = static_cast<uint64_t>(days) * 86'400 / static_cast<uint64_t>(step_s);
  std::vector<RetentionPoint> every_point;  // TXID n holds n rows
  sqlite::Statement insert(app, "INSERT INTO t(v) VALUES (printf('row %d of the simulated week', ?1))");
  for (uint64_t i = 0; i < steps; ++i) {
    const uint64_t now = t0 + i * static_cast<uint64_t>(step_s) * 1000;
    set_simulated_now_ms(now);
    insert.reset();
    insert.bind_int64(1, static_cast<int64_t>(i));
    insert.step();
    replicator.step(static_cast<int64_t>(now));
    every_point.push_back({i + 1, now, false});
  }
  replicator.finish();
  set_simulated_now_ms(std::nullopt);

  // The replica's newest point is the last write: one TXID per write.
  const ReplicaListing listing = list_replica(storage);
  HeaderCache headers(storage);
  REQUIRE(newest_txid(listing, headers) == steps);

  // What a prune now keeps is what the policy keeps from every point ever written.
  PruneOptions dry;
  dry.policy = options.retention;
  dry.dry_run = true;
  const PruneResult pruned = run_prune(dry, storage);
  std::set<uint64_t> expected;
  for (const RetentionPoint& p : apply_policy(every_point, options.retention).keep) expected.insert(p.txid);
  std::set<uint64_t> kept;
  for (const RetentionPoint& p : pruned.plan.points.keep) kept.insert(p.txid);
  CHECK(kept == expected);

  // Retention ran: at most the last interval's objects are left to delete.
  const std::vector<RestorePoint> points = list_restore_points(storage, 4);
  std::set<uint64_t> listed;
  for (const RestorePoint& p : points) listed.insert(p.txid);
  for (uint64_t txid : expected) CHECK(listed.count(txid) == 1);
  // Besides the policy's points: the points since the last retention run
  // (one interval of writes) and a few snapshots kept chains start from.
  CHECK(listed.size() < expected.size() + 3600 / static_cast<size_t>(step_s) + 100);

  // What each kept point's restore fetches, from its plan.
  size_t oldest_objects = 0;
  size_t most_objects = 0;
  uint64_t most_objects_txid = 0;
  for (uint64_t txid : expected) {
    RestoreTarget target;
    target.txid = txid;
    const size_t objects = 1 + plan_restore(listing, target, headers, storage.url()).deltas.size();
    if (txid == *expected.begin()) oldest_objects = objects;
    if (objects > most_objects) {
      most_objects = objects;
      most_objects_txid = txid;
    }
  }
  if (report) {
    const std::vector<ObjectInfo> objects = storage.list("");
    std::map<std::string, std::pair<size_t, uint64_t>> by_kind;  // "snapshots", "L0".."L3"
    for (const ObjectInfo& o : objects) {
      const std::string kind = o.key.starts_with("snapshots/") ? "snapshots" : o.key.substr(7, 2);
      by_kind[kind].first += 1;
      by_kind[kind].second += o.size;
    }
    for (const auto& [kind, count] : by_kind) {
      std::printf("  %-9s %6zu objects %12llu bytes\n", kind.c_str(), count.first,
                  static_cast<unsigned long long>(count.second));
    }
    std::printf(
        "simulated %d days, a write every %d s: %llu TXIDs\n"
        "  kept: %zu restore points (%zu by the policy), %zu objects, %llu bytes\n"
        "  every delta kept instead: %llu L0 objects, %llu bytes (+ snapshots)\n"
        "  restore of the oldest kept point (TXID %llu) fetches %zu objects; the most any kept point needs "
        "is %zu "
        "(TXID %llu)\n",
        days, step_s, static_cast<unsigned long long>(steps), listed.size(), expected.size(), objects.size(),
        static_cast<unsigned long long>(total_bytes(storage)), static_cast<unsigned long long>(l0_objects),
        static_cast<unsigned long long>(l0_bytes), static_cast<unsigned long long>(*expected.begin()),
        oldest_objects, most_objects, static_cast<unsigned long long>(most_objects_txid));
    std::fflush(stdout);
  }

  // Each kept point restores to the rows written up to it (with
  // WALSHIP_SIM_RESTORE_EVERY=N only every Nth, the oldest and the newest:
  // a month at 1 tx/s keeps thousands of points of a 100 MB database).
  const auto every = static_cast<size_t>(std::max(1, env_int("WALSHIP_SIM_RESTORE_EVERY", 1)));
  RestoreOptions restore;
  restore.output_path = dir.path() + "/restored.db";
  restore.force = true;
  restore.quiet = true;
  size_t index = 0;
  for (uint64_t txid : expected) {
    if (index++ % every != 0 && txid != *expected.begin() && txid != *expected.rbegin()) continue;
    CAPTURE(txid);
    restore.target.txid = txid;
    const RestoreResult result = run_restore(restore, storage);
    CHECK(result.txid == txid);
    CHECK(test::count_rows(restore.output_path) == static_cast<int64_t>(txid));
  }
  VerifyOptions verify;
  verify.quiet = true;
  CHECK(run_verify(verify, storage).healthy());
}
