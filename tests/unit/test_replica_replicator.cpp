// The Replicator's decisions, against the in-memory backend and a real
// SQLite database, with a fake clock: resuming from the local state,
// rehashing after the WAL moved on behind its back, a new snapshot after
// lost continuity, checkpoint rounds, and a start on a node that lost its
// local state (a spot node rescheduled: restore, then replicate).
#include <doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backends/memory/memory_storage.h"
#include "lib/format/keys.h"
#include "lib/replica/lease.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/replicate_metrics.h"
#include "lib/replica/replicator.h"
#include "lib/replica/restore.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/log.h"
#include "lib/util/time.h"
#include "tests/unit/replica_builder.h"
#include "tests/unit/support.h"

using namespace walship;

namespace {

std::unique_ptr<Replicator> replicator_for(const ReplicatorOptions& options, MemoryStorage& storage,
                                           ReplicateMonitor* monitor = nullptr,
                                           Replicator::Clock clock = {}) {
  std::vector<std::unique_ptr<Storage>> replicas;
  replicas.push_back(std::make_unique<test::BorrowedStorage>(storage));
  return std::make_unique<Replicator>(options, std::move(replicas), monitor, std::move(clock));
}

constexpr int64_t k_t0 = 1'795'000'000'000;

// A database an app writes, a replica in memory, and a fake clock that
// step() and the replicator's stamps share: nothing reads a real clock.
struct Fixture {
  Fixture() : app(db_path(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE), storage("memory://decisions") {
    set_log_level(LogLevel::warn);
    test::init_wal_app(app, true);
    // The app never checkpoints on its own: the tests decide when.
    app.exec("PRAGMA wal_autocheckpoint=0");
    options.db_path = db_path();
    options.compaction.clear();
    options.retention_enabled = false;
    options.snapshot_interval_ms = 0;
  }

  std::string db_path() const { return dir.path() + "/app.db"; }
  std::unique_ptr<Replicator> replicator() {
    return replicator_for(options, storage, &monitor, [this] { return now; });
  }
  void write(int rows = 1) {
    for (int i = 0; i < rows; ++i) app.exec("INSERT INTO t(v) VALUES (randomblob(300))");
  }
  // Steps at the fake clock's time, then moves it on a second.
  std::optional<int64_t> step(Replicator& r) {
    const std::optional<int64_t> next = r.step(now);
    now += 1'000;
    return next;
  }
  // Every L0 delta upload fails (a connection reset) while `fail` is true.
  void fail_l0_uploads_while(const bool& fail) {
    storage.set_fault_hook([&fail](std::string_view op, const std::string& key) {
      if (fail && op == "put_if_absent" && key.starts_with("deltas/L0/"))
        throw StorageError("injected: connection reset", true);
    });
  }
  int64_t rows() { return app.query_int("SELECT count(*) FROM t"); }
  uint64_t newest() {
    HeaderCache headers(storage);
    return newest_txid(list_replica(storage), headers);
  }
  // Restores the newest point and returns its rows.
  int64_t restored_rows() {
    RestoreOptions restore;
    restore.output_path = dir.path() + "/restored.db";
    restore.force = true;
    restore.quiet = true;
    run_restore(restore, storage);
    return test::count_rows(restore.output_path);
  }

  test::ScratchDir dir;
  sqlite::Database app;
  MemoryStorage storage;
  ReplicateMonitor monitor{dir.path() + "/app.db"};
  ReplicatorOptions options;
  int64_t now = k_t0;
};

// Whether another process finds one of DB-shm's read locks taken (SQLite's
// WAL_READ_LOCK(0) to (4): bytes 123 to 127). F_GETLK reports only the locks
// of other processes, hence the child.
bool shm_read_lock_held(const std::string& shm) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(shm.c_str(), O_RDONLY | O_CLOEXEC);
    for (int i = 3; fd >= 0 && i < 8; ++i) {
      struct flock lock {};
      lock.l_type = F_WRLCK;
      lock.l_whence = SEEK_SET;
      lock.l_start = 120 + i;
      lock.l_len = 1;
      if (::fcntl(fd, F_GETLK, &lock) == 0 && lock.l_type != F_UNLCK) ::_exit(0);
    }
    ::_exit(1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

TEST_CASE("a scrape reads the WAL's change counter and leaves the replicator's read lock held") {
  // The read keeps the app from restarting the WAL over frames not shipped
  // yet. Closing any descriptor of DB-shm drops every POSIX lock the process
  // holds on it: a scrape that opened the file itself silently released it.
  Fixture f;
  auto r = f.replicator();
  f.write();
  f.step(*r);
  const std::string shm = f.db_path() + "-shm";
  REQUIRE(shm_read_lock_held(shm));
  f.write();
  const ReplicateStatus status = f.monitor.snapshot();
  CHECK(status.wal_change.has_value());
  CHECK(status.wal_change != status.shipped_change);
  CHECK(shm_read_lock_held(shm));
  r.reset();
  CHECK_FALSE(f.monitor.snapshot().wal_change.has_value());  // taken back before the descriptor closed
}

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
  options.compact_in_background = false;          // the simulated clock decides when it is done

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

TEST_CASE("a restart resumes from the local state: the WAL frames written meanwhile ship as they are") {
  Fixture f;
  {
    auto first = f.replicator();
    f.step(*first);  // the first snapshot, TXID 1
    f.write(3);
    f.step(*first);
    first->finish();
  }
  REQUIRE(f.newest() == 2);
  const ReplicateStatus before = f.monitor.snapshot();
  // walship is down; the app commits three transactions into the same WAL.
  f.write(3);

  auto second = f.replicator();
  f.step(*second);
  const ReplicateStatus after = f.monitor.snapshot();
  // Resumed at the saved WAL position: the three commits ship as one WAL
  // delta. A rehash would have counted a lost continuity and shipped no
  // transactions (a difference, or a new snapshot: the database is not the
  // replica's newest state).
  CHECK(after.lost_continuity == before.lost_continuity);
  CHECK(after.shipped_transactions - before.shipped_transactions == 3);
  CHECK(after.snapshots == before.snapshots);
  CHECK(f.storage.list("snapshots/").size() == 1);
  CHECK(f.newest() == 3);
  CHECK(f.storage.object(format::l0_delta_key(3)));
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("the WAL checkpointed behind its back: a rehash ships only the pages that differ, no snapshot") {
  Fixture f;
  {
    auto first = f.replicator();
    f.step(*first);
    f.write(2);
    first->finish();
  }
  const uint64_t shipped = f.newest();
  // walship is down: the app writes and checkpoints the WAL away, so the
  // position in the local state no longer exists.
  f.write(5);
  f.app.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  f.write();

  auto second = f.replicator();
  f.step(*second);
  const ReplicateStatus status = f.monitor.snapshot();
  CHECK(status.lost_continuity == 1);
  CHECK(f.storage.list("snapshots/").size() == 1);
  CHECK(f.newest() == shipped + 1);  // one delta: the difference, as the next TXID
  CHECK(f.restored_rows() == f.rows());
  // And shipping goes on from the new position.
  f.write();
  f.step(*second);
  CHECK(f.newest() == shipped + 2);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("a rehash whose upload failed sends the same delta at the next step, without rehashing again") {
  // Past truncate_pages the WAL is truncated and every replica rehashes at
  // the next step; that rehash's delta fails to upload once.
  Fixture f;
  f.options.checkpoint_pages = 4;
  f.options.truncate_pages = 8;
  auto r = f.replicator();
  f.step(*r);
  // An app's read keeps the checkpoints from the WAL's end.
  sqlite::Database reader(f.db_path(), SQLITE_OPEN_READONLY);
  reader.exec("BEGIN");
  reader.query_int("SELECT count(*) FROM t");
  f.write(20);
  f.step(*r);
  reader.exec("COMMIT");
  f.write(2);
  bool fail = true;
  f.fail_l0_uploads_while(fail);
  CHECK_THROWS_AS(f.step(*r), StorageError);
  CHECK(f.monitor.snapshot().lost_continuity == 1);
  fail = false;
  f.step(*r);
  CHECK(f.monitor.snapshot().lost_continuity == 1);  // one rehash, its delta sent twice
  CHECK(f.storage.list("snapshots/").size() == 1);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("lost continuity with no local state and a database the replica never had: a new snapshot") {
  Fixture f;
  {
    auto first = f.replicator();
    f.step(*first);
    f.write(2);
    first->finish();
  }
  const uint64_t shipped = f.newest();
  // The node lost its state and the database is not a state of the replica
  // (written to while nothing replicated it).
  std::filesystem::remove_all(f.db_path() + "-walship");
  f.write(3);

  auto second = f.replicator();
  f.step(*second);
  CHECK(f.monitor.snapshot().lost_continuity == 1);
  CHECK(f.storage.object(format::snapshot_key(shipped + 1)));
  CHECK(f.newest() == shipped + 1);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("deltas and snapshots carry the injected clock's time") {
  Fixture f;
  auto r = f.replicator();
  f.step(*r);
  const int64_t snapshot_time = k_t0;
  f.write();
  const int64_t delta_time = f.now;
  f.step(*r);
  HeaderCache headers(f.storage);
  CHECK(headers.get(format::snapshot_key(1)).commit_time_ms == static_cast<uint64_t>(snapshot_time));
  CHECK(headers.get(format::l0_delta_key(2)).commit_time_ms == static_cast<uint64_t>(delta_time));
}

TEST_CASE(
    "checkpoint rounds: past checkpoint_pages, at most one locked checkpoint a second, and the WAL "
    "restarts") {
  Fixture f;
  f.options.checkpoint_pages = 8;
  auto r = f.replicator();
  f.step(*r);
  f.write(20);
  // The first round: shipped, checkpointed to the end, the read re-taken on
  // the checkpointed WAL; step() asks to look again soon for its restart.
  const int64_t at = f.now;
  const std::optional<int64_t> next = f.step(*r);
  CHECK(f.monitor.snapshot().checkpoints_passive == 1);
  REQUIRE(next);
  CHECK(*next <= at + 20);
  // The app's next commit restarts the WAL; the replicator follows it into
  // the new generation without losing continuity.
  f.write();
  r->step(at + 100);
  f.write(20);
  // Within the second after the last locked checkpoint: none under the lock.
  r->step(at + 500);
  CHECK(f.monitor.snapshot().checkpoints_passive == 1);
  // A second after it: the next round.
  f.write();
  r->step(at + 1'000);
  CHECK(f.monitor.snapshot().checkpoints_passive == 2);
  CHECK(f.monitor.snapshot().lost_continuity == 0);
  CHECK(f.storage.list("snapshots/").size() == 1);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("a snapshot asked for while the app commits without a pause is written every time") {
  // Each step checkpoints, so walship's read is re-taken on a checkpointed
  // WAL (read mark 0), where the app's next commit restarts the WAL. A
  // restart while the snapshot moved its read was taken for frames lost (a
  // rehash), or moved the replica past what the new read sees, and the
  // snapshot was refused as "being resynchronised".
  Fixture f;
  f.options.checkpoint_pages = 1;
  auto r = f.replicator();
  f.step(*r);
  std::atomic<bool> done{false};
  std::thread app([&] {
    sqlite::Database db(f.db_path(), SQLITE_OPEN_READWRITE);
    db.set_busy_timeout(10'000);
    db.exec("PRAGMA wal_autocheckpoint=0");
    while (!done) db.exec("UPDATE t SET v = randomblob(300) WHERE rowid = 1");
  });
  f.write();
  int refused = 0;
  for (int i = 0; i < 300; ++i) {
    r->request_snapshot("");
    std::optional<std::string> answer;
    // Unanswered: the replicate loop steps again at once.
    for (int step = 0; step < 10 && !answer; ++step) {
      f.step(*r);
      answer = r->take_snapshot_answer();
    }
    if (!answer || !answer->starts_with("ok ")) ++refused;
  }
  done = true;
  app.join();
  f.step(*r);
  CHECK(refused == 0);
  CHECK(f.monitor.snapshot().lost_continuity == 0);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("a failed upload sends the same delta again at the next step, then the new frames: no gap") {
  Fixture f;
  auto r = f.replicator();
  f.step(*r);
  f.write(2);
  bool fail = true;
  f.fail_l0_uploads_while(fail);
  CHECK_THROWS_AS(f.step(*r), StorageError);
  CHECK(f.newest() == 1);
  fail = false;
  f.write();
  f.step(*r);
  CHECK(f.newest() == 3);  // the two writes' delta as it was, then the third's
  CHECK(f.monitor.snapshot().lost_continuity == 0);
  CHECK(f.storage.list("snapshots/").size() == 1);
  CHECK(f.restored_rows() == f.rows());
}

// Holds the storage operations `op` on keys starting with `prefix` that
// other threads than the test's (the replicator's maintenance) make, until
// opened: a store that stalls for as long as the test needs.
class MaintenanceGate {
 public:
  MaintenanceGate(MemoryStorage& storage, std::string op, std::string prefix)
      : m_op(std::move(op)), m_prefix(std::move(prefix)), m_test(std::this_thread::get_id()) {
    storage.set_fault_hook([this](std::string_view called, const std::string& key) {
      if (called != m_op || !key.starts_with(m_prefix) || std::this_thread::get_id() == m_test) return;
      std::unique_lock lock(m_mutex);
      ++m_held;
      m_changed.notify_all();
      if (!m_changed.wait_for(lock, std::chrono::seconds(60), [this] { return m_open; }))
        throw StorageError("the test never opened the gate", false);
    });
  }
  // Waits until an operation is held.
  bool holding() {
    std::unique_lock lock(m_mutex);
    return m_changed.wait_for(lock, std::chrono::seconds(60), [this] { return m_held > 0; });
  }
  void open() {
    {
      std::lock_guard lock(m_mutex);
      m_open = true;
    }
    m_changed.notify_all();
  }

 private:
  std::string m_op;
  std::string m_prefix;
  std::thread::id m_test;
  std::mutex m_mutex;
  std::condition_variable m_changed;
  int m_held = 0;
  bool m_open = false;
};

// Steps (the fake clock moving on) until `done`, a few thousand at most.
template <typename F>
void step_until(Fixture& f, Replicator& r, F done) {
  for (int i = 0; i < 6000 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    f.step(r);
  }
}

// Retention on, keeping the points of the last `window_ms`.
void keep_within(Fixture& f, int64_t window_ms) {
  f.options.retention_enabled = true;
  f.options.retention = RetentionPolicy{};
  f.options.retention.keep_within_ms = window_ms;
}

// Writes a row and steps; checks that the step shipped it.
void ship_one(Fixture& f, Replicator& r) {
  f.write();
  const uint64_t before = f.newest();
  f.step(r);
  CHECK(f.newest() == before + 1);
}

TEST_CASE("a compaction waiting on a slow store never delays shipping; its file is counted once it is done") {
  // Reading back a minute of deltas took seconds on a store answering in
  // tens of milliseconds, and the step did it before shipping again: a node
  // lost then lost every commit of those seconds.
  Fixture f;
  f.options.compaction = {{1, 60'000}};
  MaintenanceGate gate(f.storage, "put_if_absent", "deltas/L1/");
  auto r = f.replicator();
  f.step(*r);
  for (int i = 0; i < 3; ++i) ship_one(f, *r);
  // The next minute: its first step ships, then starts the last minute's L1.
  f.now = (f.now / 60'000 + 1) * 60'000 + 100;
  ship_one(f, *r);
  REQUIRE(gate.holding());
  for (int i = 0; i < 3; ++i) ship_one(f, *r);
  CHECK(f.storage.list("deltas/L1/").empty());
  CHECK(f.monitor.snapshot().compactions == 0);
  gate.open();
  step_until(f, *r, [&] { return f.monitor.snapshot().compactions > 0; });
  CHECK(f.monitor.snapshot().compactions == 1);
  CHECK(f.storage.list("deltas/L1/").size() == 1);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE(
    "compaction merges the deltas it shipped from local copies; a new process reads them from the store") {
  Fixture f;
  f.options.compaction = {{1, 60'000}, {2, 3'600'000}};
  std::atomic<int> fetched{0};  // L0 delta reads by the maintenance thread
  const std::thread::id stepping = std::this_thread::get_id();
  f.storage.set_fault_hook([&](std::string_view op, const std::string& key) {
    if (op == "get" && key.starts_with("deltas/L0/") && std::this_thread::get_id() != stepping) ++fetched;
  });
  const int64_t hour = (f.now / 3'600'000 + 1) * 3'600'000;
  {
    auto r = f.replicator();
    f.now = hour + 1'000;
    f.step(*r);
    // Three minutes of an hour, then the next hour: three L1 files and the L2.
    for (int minute = 0; minute < 3; ++minute) {
      f.now = hour + minute * 60'000 + 5'000;
      for (int i = 0; i < 4; ++i) ship_one(f, *r);
    }
    f.now = hour + 3'600'000 + 5'000;
    ship_one(f, *r);
    step_until(f, *r, [&] { return f.storage.list("deltas/L2/").size() == 1; });
    CHECK(f.storage.list("deltas/L1/").size() == 3);
    CHECK(fetched == 0);
    r->finish();
  }
  CHECK(f.restored_rows() == f.rows());
  // Another process: what it did not ship, it reads from the store.
  auto r = f.replicator();
  for (int i = 0; i < 3; ++i) ship_one(f, *r);
  f.now += 60'000;
  ship_one(f, *r);
  step_until(f, *r, [&] { return f.storage.list("deltas/L1/").size() == 4; });
  CHECK(fetched > 0);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("retention reads no header of an object this process wrote, run after run") {
  // A prune plans from every object's header: one ranged GET each, run
  // after run (7,299 objects kept at a commit a second), unless known.
  // Without compaction, every read of the maintenance thread is a prune's.
  Fixture f;
  keep_within(f, 120'000);
  f.options.retention_interval_ms = 300'000;
  f.options.snapshot_interval_ms = 600'000;
  std::atomic<int> fetched{0};  // reads by the maintenance thread
  const std::thread::id stepping = std::this_thread::get_id();
  f.storage.set_fault_hook([&](std::string_view op, const std::string&) {
    if (op == "get" && std::this_thread::get_id() != stepping) ++fetched;
  });
  auto r = f.replicator();
  f.step(*r);
  for (int i = 0; i < 120; ++i) {  // 40 minutes, a commit every 20 s
    f.now += 19'000;
    f.write();
    f.step(*r);  // (newest() would read headers on threads of its own)
  }
  step_until(f, *r, [&] { return f.monitor.snapshot().pruned_objects > 0; });
  CHECK(f.monitor.snapshot().pruned_objects > 0);
  // A listing may land between an upload and the recording of its header
  // (a step descheduled there): a read or two. Before, every header, every run.
  CHECK(fetched <= 2);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("retention runs beside the steps: the deltas they ship meanwhile do not keep it from pruning") {
  Fixture f;
  keep_within(f, 60'000);
  f.options.snapshot_interval_ms = 300'000;
  auto r = f.replicator();
  f.step(*r);
  for (int i = 0; i < 3; ++i) ship_one(f, *r);
  MaintenanceGate gate(f.storage, "list", "");
  // Ten minutes on: a snapshot, then the first retention run, which lists.
  f.now += 600'000;
  ship_one(f, *r);
  REQUIRE(f.storage.list("snapshots/").size() == 2);
  REQUIRE(gate.holding());
  for (int i = 0; i < 2; ++i) ship_one(f, *r);
  CHECK(f.monitor.snapshot().pruned_objects == 0);
  gate.open();
  step_until(f, *r, [&] { return f.monitor.snapshot().pruned_objects > 0; });
  CHECK(f.storage.list("snapshots/").size() == 1);  // the first one's points are past the window
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("no upload while walship holds the app's writer lock, though the app commits during every upload") {
  // Under the lock walship stages what it has not shipped and uploads it
  // after: a store that stalls must never stall the app's commits. The app
  // here commits whenever an upload starts, so a locked checkpoint always
  // finds frames not shipped yet.
  Fixture f;
  f.options.checkpoint_pages = 8;
  sqlite::Database app2(f.db_path(), SQLITE_OPEN_READWRITE);
  int uploads = 0;
  int under_lock = 0;
  f.storage.set_fault_hook([&](std::string_view op, const std::string& key) {
    if (op != "put_if_absent" || !key.starts_with("deltas/L0/")) return;
    ++uploads;
    if (sqlite3_exec(app2.handle(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      ++under_lock;
      return;
    }
    app2.exec("INSERT INTO t(v) VALUES (randomblob(300))");
    app2.exec("COMMIT");
  });
  auto r = f.replicator();
  for (int i = 0; i < 10; ++i) {
    f.write(6);
    f.step(*r);
  }
  f.storage.set_fault_hook({});
  f.step(*r);
  CHECK(f.monitor.snapshot().checkpoints_passive >= 2);
  CHECK(uploads > 10);
  CHECK(under_lock == 0);
  CHECK(f.monitor.snapshot().lost_continuity == 0);
  CHECK(f.restored_rows() == f.rows());
}

namespace {

// Writes through, then loses the answer of the first upload of `key`: the
// store holds the object, the writer sees a connection reset.
class LosesAnswer : public test::BorrowedStorage {
 public:
  LosesAnswer(Storage& inner, std::string key) : BorrowedStorage(inner), m_key(std::move(key)) {}
  bool put_if_absent(const std::string& key, ByteSource& data) override {
    const bool created = BorrowedStorage::put_if_absent(key, data);
    if (key == m_key && !m_lost) {
      m_lost = true;
      throw StorageError("injected: the answer was lost", true);
    }
    return created;
  }

 private:
  std::string m_key;
  bool m_lost = false;
};

}  // namespace

TEST_CASE(
    "an upload that landed and lost its answer is recognised at the next step, not taken for a writer's") {
  // Before, the next step built the delta anew (another commit time, more
  // frames), found the key taken, and took that for another writer: a
  // reconcile, and a replicate that exited 4 as a stale node.
  Fixture f;
  std::vector<std::unique_ptr<Storage>> replicas;
  replicas.push_back(std::make_unique<LosesAnswer>(f.storage, format::l0_delta_key(2)));
  Replicator r(f.options, std::move(replicas), &f.monitor, [&f] { return f.now; });
  f.step(r);
  f.write(2);
  CHECK_THROWS_AS(f.step(r), StorageError);
  CHECK(f.newest() == 2);  // it landed
  f.write();
  f.step(r);
  CHECK(f.newest() == 3);
  CHECK(f.monitor.snapshot().lost_continuity == 0);
  CHECK(f.storage.list("snapshots/").size() == 1);
  CHECK(f.restored_rows() == f.rows());
}

TEST_CASE("the difference from a shipped state: the pages whose hash changed, and the new checksum") {
  ShippedState state;
  state.page_hashes = {1, 2, 4, 8};
  state.db_pages = 4;
  state.checksum = 1 ^ 2 ^ 4 ^ 8;
  // Page 2 changed, page 4 gone (the database shrank).
  ShippedState::Difference shrunk = state.difference({1, 16, 4});
  CHECK(shrunk.changed == std::vector<uint32_t>{2});
  CHECK(shrunk.checksum == (1 ^ 16 ^ 4));
  // Grown by a page, nothing else changed.
  ShippedState::Difference grown = state.difference({1, 2, 4, 8, 32});
  CHECK(grown.changed == std::vector<uint32_t>{5});
  CHECK(grown.checksum == (1 ^ 2 ^ 4 ^ 8 ^ 32));
  CHECK(state.difference(state.page_hashes).changed.empty());
}

TEST_CASE("a step says which commits every replica holds: the counter at its start, once shipped") {
  Fixture f;
  auto r = f.replicator();
  f.write();
  f.step(*r);
  CHECK_FALSE(r->covered_change().has_value());  // nobody asked: no lease check, no answer
  r->request_durable_ack();
  f.step(*r);
  REQUIRE(r->covered_change().has_value());
  CHECK(r->covered_change() == f.monitor.commit_counter());
  f.write(3);
  const std::optional<uint32_t> committed = f.monitor.commit_counter();
  REQUIRE(committed.has_value());
  CHECK(static_cast<int32_t>(*committed - *r->covered_change()) > 0);  // not shipped yet
  // A failed upload covers nothing new, and says so.
  bool fail = true;
  f.fail_l0_uploads_while(fail);
  r->request_durable_ack();
  CHECK_THROWS_AS(f.step(*r), StorageError);
  CHECK_FALSE(r->covered_change().has_value());
  fail = false;
  r->request_durable_ack();
  f.step(*r);
  CHECK(r->covered_change() == committed);
  // After a checkpoint restarted the WAL, the counter goes on.
  f.app.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  f.write();
  r->request_durable_ack();
  f.step(*r);
  CHECK(r->covered_change() == f.monitor.commit_counter());
  CHECK(f.restored_rows() == f.rows());
  f.write();
  r->request_durable_ack();
  r->finish();
  CHECK(r->covered_change() == f.monitor.commit_counter());
}

TEST_CASE("a writer whose lease was taken while it shipped calls nothing durable, and stops") {
  Fixture f;
  auto r = f.replicator();
  f.write();
  f.step(*r);
  // Another writer takes the replica over (--take-over) while this one's
  // lease still runs; this one ships before its next renewal.
  Lease other(
      f.storage, f.options.lease_ttl_ms, true, [&f] { return f.now; }, [](int64_t) {},
      LeaseIdentity{"0123456789abcdef", "other-host", "", "", 4242, 0});
  other.acquire(false);
  f.write();
  r->request_durable_ack();
  CHECK_THROWS_AS(r->step(f.now), FencedError);
  CHECK_FALSE(r->covered_change().has_value());
}

TEST_CASE("a writer paused past its lease's expiry calls nothing durable") {
  Fixture f;
  auto r = f.replicator();
  f.write();
  f.step(*r);
  f.write();
  r->request_durable_ack();
  // The step starts in time (no renewal due yet); the clock the lease reads
  // after the upload is past the expiry: the process was paused meanwhile.
  const int64_t step_time = f.now;
  f.now += f.options.lease_ttl_ms + 1;
  r->step(step_time);
  CHECK_FALSE(r->covered_change().has_value());
}
