// The Replicator's start on a node that lost its local state (a spot node
// rescheduled: restore, then replicate), against the in-memory backend.
#include <doctest.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "backends/memory/memory_storage.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/replicator.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/log.h"
#include "lib/util/time.h"
#include "tests/unit/replica_builder.h"
#include "tests/unit/support.h"

using namespace walship;

namespace {

std::unique_ptr<Replicator> replicator_for(const ReplicatorOptions& options, MemoryStorage& storage) {
  std::vector<std::unique_ptr<Storage>> replicas;
  replicas.push_back(std::make_unique<test::BorrowedStorage>(storage));
  return std::make_unique<Replicator>(options, std::move(replicas));
}

}  // namespace

TEST_CASE("a replicator that lost its local state starts with a few reads, not one per L0 delta") {
  set_log_level(LogLevel::warn);
  test::ScratchDir dir;
  const std::string db_path = dir.path() + "/app.db";
  sqlite::Database app(db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  test::init_wal_app(app, false);
  MemoryStorage storage("memory://restart");
  ReplicatorOptions options;
  options.db_path = db_path;
  // Every L0 delta stays: as with compaction off, or within the span of one
  // L1 file, or before a retention run (a writer restarted more often than
  // the retention interval never prunes).
  options.compaction.clear();
  options.retention_enabled = false;

  const int64_t t0 = 1'795'000'000'000;
  const int writes = 300;
  {
    auto first = replicator_for(options, storage);
    for (int i = 0; i < writes; ++i) {
      app.exec("INSERT INTO t(v) VALUES ('row')");
      first->step(t0 + i * 1000);
    }
    first->finish();
  }
  REQUIRE(storage.list("deltas/L0/").size() == writes - 1);  // TXID 1 is the first snapshot

  // The node is gone with its local state; the database is back (here: the
  // same file) and replicate starts on it.
  std::filesystem::remove_all(db_path + "-walship");
  const size_t gets_before = storage.count("get");
  auto second = replicator_for(options, storage);
  second->start();
  // The newest delta's header (its max TXID) and its trailer (the checksum
  // the restored database must match): nothing scales with the replica.
  CHECK(storage.count("get") - gets_before <= 4);

  // It carried on the TXID sequence from the rehash: no new snapshot.
  app.exec("INSERT INTO t(v) VALUES ('row')");
  second->finish();
  const ReplicaListing listing = list_replica(storage);
  HeaderCache headers(storage);
  CHECK(listing.snapshots.size() == 1);
  CHECK(newest_txid(listing, headers) == writes + 1);
}

TEST_CASE("a writer restarted more often than the retention interval still prunes") {
  set_log_level(LogLevel::warn);
  test::ScratchDir dir;
  const std::string db_path = dir.path() + "/app.db";
  sqlite::Database app(db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  test::init_wal_app(app, true);
  MemoryStorage storage("memory://restarts");
  ReplicatorOptions options;
  options.db_path = db_path;
  options.retention = RetentionPolicy{};
  options.retention.keep_within_ms = 5 * 60'000;  // retention_interval_ms stays 1 h

  // Six nodes of ten minutes each (spot nodes preempted every ten minutes),
  // one write every ten seconds.
  const int64_t t0 = 1'795'000'000'000 - 1'795'000'000'000 % 3'600'000;
  const int per_node = 60;
  const int nodes = 6;
  for (int node = 0; node < nodes; ++node) {
    auto replicator = replicator_for(options, storage);
    for (int i = 0; i < per_node; ++i) {
      const int64_t now = t0 + (node * per_node + i) * 10'000;
      set_simulated_now_ms(static_cast<uint64_t>(now));
      app.exec("INSERT INTO t(v) VALUES ('row')");
      replicator->step(now);
    }
    replicator->finish();
  }
  set_simulated_now_ms(std::nullopt);
  // An hour of writes and no process lived an hour: still, what the policy
  // drops is gone. Left: the L0 deltas of the policy's five minutes before
  // the last node's prune and of that node's ten minutes, at most 90 (of 359).
  CHECK(storage.list("deltas/L0/").size() <= 90);
}
