#include "lib/replica/replicator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <utility>

#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/compaction.h"
#include "lib/replica/db_file.h"
#include "lib/replica/follower.h"
#include "lib/replica/lease.h"
#include "lib/replica/prune.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/snapshot.h"
#include "lib/util/background_task.h"
#include "lib/util/error.h"
#include "lib/util/log.h"
#include "lib/util/time.h"

namespace walship {

namespace {

constexpr int k_read_busy_timeout_ms = 5'000;
// How long (in 1 ms tries) a checkpoint waits for the app's write
// transaction to end. The app waits for walship's short hold of the writer
// lock with its own busy timeout.
constexpr int k_writer_busy_tries = 1'000;
constexpr int k_truncate_busy_timeout_ms = 1'000;
// How many times (1 ms apart) a checkpoint tries for the checkpoint lock.
// Under the writer lock, longer: the app's own checkpoint, which holds it,
// cannot be followed by another one before walship's.
constexpr int k_checkpoint_lock_tries = 50;
constexpr int k_locked_checkpoint_lock_tries = 1'000;
// Checkpoints copy without the writer lock, up to walship's read; the one
// that lets the app restart the WAL holds the lock for what is left, at most
// once a second (or at once past a quarter of --truncate-pages). Unlocked
// rounds before it repeat (at most this often) until what is left is few.
constexpr int64_t k_restart_interval_ms = 1'000;
constexpr int k_unlocked_checkpoint_rounds = 3;
constexpr int k_locked_checkpoint_frames = 256;
// After a complete checkpoint, how soon step() looks for the WAL's restart.
constexpr int64_t k_repin_ms = 20;
// Steps (one right after another) that try a snapshot asked for before it
// is refused.
constexpr int k_snapshot_tries = 5;
// The first retention run comes this long after the start (or one interval,
// if shorter), not a whole interval: a writer restarted more often than the
// interval (spot nodes, deploys) would otherwise never prune. Not at once:
// a rescheduled node's first minute belongs to the app catching up.
constexpr int64_t k_first_retention_ms = 60'000;
// A step this soon after one that found maintenance under way collects it;
// after a failed run, the next waits this long.
constexpr int64_t k_maintenance_poll_ms = 1'000;
constexpr int64_t k_maintenance_retry_ms = 10'000;

uint64_t inode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

// The whole-database checksum after an object: the post_sum of its trailer,
// read with one small range GET.
std::vector<uint64_t> hash_database(sqlite::Database& db, uint32_t page_size) {
  std::vector<uint64_t> hashes(static_cast<size_t>(db.query_int("PRAGMA main.page_count")), 0);
  for_each_db_page(db, page_size, [&](uint32_t pgno, std::span<const std::byte> page) {
    if (pgno > hashes.size()) {
      throw Failure("database '" + db.path() + "' changed size while reading it in one transaction");
    }
    hashes[pgno - 1] = format::page_hash(pgno, page);
  });
  return hashes;
}

// A PASSIVE checkpoint. The app's own (automatic) checkpoints, which fail
// against walship's read mark, hold the checkpoint lock for moments at a
// time: retry for a few milliseconds rather than give up.
int passive_checkpoint(sqlite::Database& db, int tries, int& wal_frames, int& checkpointed) {
  for (int attempt = 1;; ++attempt) {
    wal_frames = checkpointed = -1;
    const int rc =
        sqlite3_wal_checkpoint_v2(db.handle(), "main", SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &checkpointed);
    // BUSY with counts: it ran, readers kept some frames; without: locked out.
    if (rc != SQLITE_BUSY || wal_frames >= 0 || attempt == tries) return rc;
    ::usleep(1000);
  }
}

// Starts a read transaction: BEGIN alone takes no lock until the first read.
void begin_read(sqlite::Database& db) {
  db.exec("BEGIN");
  db.query_int("SELECT count(*) FROM sqlite_schema");
}

// A database replicate cannot open for a reason only a person can fix
// becomes the command's one line (exit 2, no retries), saying what to do;
// anything else passes through and is retried.
[[noreturn]] void explain_open_failure(const std::string& db, const sqlite::Error& e) {
  const std::string folder = std::filesystem::path(db).parent_path().string();
  switch (e.primary_code()) {
    case SQLITE_READONLY:
      if (::access(folder.empty() ? "." : folder.c_str(), W_OK) != 0) {
        throw UsageError("the folder of database '" + db +
                         "' is read-only for this user: a WAL database needs to create '" + db +
                         "-shm' there; make the folder writable, or run replicate as the app's user");
      }
      throw UsageError(
          "database '" + db +
          "' is read-only for this user: replicate reads and writes it (it checkpoints the WAL); "
          "run it as the app's user");
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      throw UsageError("database '" + db + "' is malformed (" + sqlite3_errstr(e.code()) +
                       "): repair it, or restore it from its replica with 'walship restore'");
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      if (::access(db.c_str(), R_OK | W_OK) != 0) {
        throw UsageError("database '" + db + "' cannot be opened for reading and writing by this user (" +
                         std::strerror(errno) + "): run replicate as the app's user");
      }
      break;
    default: break;
  }
  throw e;
}

// Pages are read once (hashing, snapshots) and never re-read: a small page
// cache and no lookaside (120 KiB per connection by default) keep memory flat
// however many databases one process replicates. Set before the first query.
void limit_memory(sqlite::Database& db) {
  sqlite3_db_config(db.handle(), SQLITE_DBCONFIG_LOOKASIDE, nullptr, 0, 0);
  db.exec("PRAGMA cache_size=16");
}

uint64_t xor_all(const std::vector<uint64_t>& hashes) {
  uint64_t sum = 0;
  for (uint64_t h : hashes) sum ^= h;
  return sum;
}

}  // namespace

// One replica of the database: its storage, what was shipped to it, and the
// deltas not yet compacted.
struct ReplicaTarget {
  ReplicaTarget(std::unique_ptr<Storage> s, const std::string& state_dir, const ReplicatorOptions& options,
                const Replicator::Clock& clock)
      : storage(std::move(s)),
        store(state_dir, storage->url()),
        lease(*storage, options.lease_ttl_ms, options.take_over, clock),
        headers(*storage) {
    compactor.cache_in(state_dir, options.compaction);
    if (options.retention_enabled) compactor.record_headers_in(headers);
  }

  std::unique_ptr<Storage> storage;
  LocalStateStore store;
  Lease lease;
  // The headers of the replica's objects this process wrote or read for a
  // prune: retention reads each header once, not once per run. Only what
  // the last prune's listing still held, and what was written since.
  HeaderCache headers;
  // The writer id of the lease's previous holder ("": none or unknown).
  std::string previous_writer;
  // The TXID this replicator's first object must have: a fence (lease.h)
  // after a takeover, written as a snapshot. nullopt: continue the chain.
  std::optional<uint64_t> fence_at;
  bool new_fence = false;  // fence_at is ours to announce with a fence object
  // The local state shipped an older TXID than the replica's newest, which
  // another writer wrote: this node came back with old data.
  std::optional<uint64_t> behind;     // then: the TXID it last shipped
  std::optional<ShippedState> state;  // trusted shipped state; nullopt: none yet
  // The WAL position in `state` cannot be trusted: rehash and ship the
  // difference (or, without a state, compare with the replica) before shipping.
  bool lost = true;
  bool verify_position = false;  // a position from the local state, not yet checked against the WAL
  // What the replica's newest object says, for a target without a state.
  bool replica_empty = true;
  uint64_t replica_newest = 0;
  uint64_t replica_post = 0;
  int64_t last_snapshot_ms = 0;
  // A delta written to its spool and not uploaded yet (every delta of WAL
  // frames or of a rehash is, for a moment; under the writer lock, until the
  // lock is released; after a failed upload, until one succeeds): its frames
  // may be gone from the WAL, and `state` already counts it. It goes up
  // before anything else of this replica, and the local state is saved then.
  struct Staged {
    UniqueFd spool;
    uint64_t bytes = 0;
    DeltaRecord record;
    uint64_t commits = 0;
    std::vector<uint32_t> changed;  // the pages whose hashes the local state saves
    bool full = false;              // a rehash's: the local state is saved whole
    // An upload of it failed after the store may have taken it (the answer
    // was lost): an object found under its key may be this one.
    bool attempted = false;
    format::FileHeader header;  // as written
  };
  std::optional<Staged> staged;
  Compactor compactor;
  uint64_t compactions_reported = 0;  // of compactor.written(), in ReplicateStatus::compactions
  int64_t next_retention_ms = 0;      // 0: k_first_retention_ms after the first step
  // The newest TXID uploaded (a delta or a snapshot): what a prune running
  // beside the steps may see as the replica's newest.
  std::atomic<uint64_t> uploaded_txid{0};
  size_t slot = 0;                   // its index in ReplicateStatus::replicas
  int64_t maintenance_retry_at = 0;  // after a failed maintenance run, none before this
  // Compaction and retention (Replicator::maintain). Last, so that it stops
  // before anything it uses goes.
  BackgroundTask maintenance;

  std::string name() const { return storage->url(); }

  // Takes `shipped` as what the replica holds from now on, continuity
  // restored; saved whole (page hashes and all) by trust(), by the upload of
  // the staged delta that reaches it after move_on().
  void move_on(ShippedState shipped) {
    state = std::move(shipped);
    state->writer = this_process().writer;
    lost = false;
  }
  void trust(ShippedState shipped) {
    move_on(std::move(shipped));
    store.save(*state, {}, true);
  }
};

Replicator::Replicator(ReplicatorOptions options, std::vector<std::unique_ptr<Storage>> replicas,
                       ReplicateMonitor* monitor, Clock clock)
    : m_options(std::move(options)), m_monitor(monitor), m_clock(std::move(clock)) {
  if (!m_clock) m_clock = [] { return static_cast<int64_t>(now_ms()); };
  m_wal_path = m_options.db_path + "-wal";
  m_shm_path = m_options.db_path + "-shm";
  m_state_dir = local_state_dir(m_options.db_path);
  for (auto& storage : replicas) {
    m_targets.push_back(std::make_unique<ReplicaTarget>(std::move(storage), m_state_dir, m_options, m_clock));
    m_targets.back()->slot = m_targets.size() - 1;
    report([&](ReplicateStatus& s) { s.replicas.push_back({m_targets.back()->name(), 0}); });
  }
}

void Replicator::report_txid(ReplicaTarget& target) {
  target.uploaded_txid = target.state ? target.state->txid : 0;
  report([&](ReplicateStatus& s) { s.replicas[target.slot].txid = target.state ? target.state->txid : 0; });
}

Replicator::~Replicator() {
  for (auto& target : m_targets) target->maintenance.stop();  // before the lease goes
  close_database();
  for (auto& target : m_targets) target->lease.release();
}

// What the replicas' storage says an operator should know (a failed
// credential refresh), for /healthz.
void Replicator::report_storage_warnings() {
  std::vector<std::string> warnings;
  for (const auto& target : m_targets) {
    if (std::string w = target->storage->warning(); !w.empty()) warnings.push_back(std::move(w));
  }
  report([&](ReplicateStatus& s) { s.storage_warnings = std::move(warnings); });
}

// Before anything is read or written: the lease of the replica (lease.h).
void Replicator::take_lease(ReplicaTarget& target) {
  if (target.lease.held()) return;
  const Lease::Taken taken = target.lease.acquire();
  target.previous_writer = taken.previous ? taken.previous->holder.writer : "";
  target.new_fence = taken.fence;
  if (!target.lease.enforced()) {
    const std::string warning = "fencing is advisory on replica '" + target.name() +
                                "': the store ignores conditional writes, so nothing stops a second writer";
    log(LogLevel::warn, warning, {{"db", m_options.db_path}});
    report([&](ReplicateStatus& s) {
      if (std::find(s.warnings.begin(), s.warnings.end(), warning) == s.warnings.end())
        s.warnings.push_back(warning);
    });
  }
}

void Replicator::open_database() {
  check_db_file(m_options.db_path);
  if (followed_by_serve_replica(m_state_dir)) {
    throw UsageError("database '" + m_options.db_path +
                     "' is followed by walship serve-replica, its only writer: stop serve-replica before "
                     "replicating it (for instance to promote it to the writer after a failover)");
  }
  try {
    open_reader();
  } catch (const sqlite::Error& e) {
    explain_open_failure(m_options.db_path, e);
  }
}

// The held connection, and the descriptors walship reads the WAL and the
// wal-index through.
void Replicator::open_reader() {
  m_reader = std::make_unique<sqlite::Database>(m_options.db_path, SQLITE_OPEN_READWRITE);
  m_reader->set_busy_timeout(k_read_busy_timeout_ms);
  // Closing the last connection would checkpoint and delete the WAL, so a
  // restart could not resume from its position: leave that to the app.
  sqlite3_db_config(m_reader->handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  limit_memory(*m_reader);
  std::string mode = m_reader->query_text("PRAGMA main.journal_mode");
  if (mode != "wal") {
    if (!m_options.enable_wal) {
      throw UsageError("database '" + m_options.db_path + "' is not in WAL mode (journal_mode=" + mode +
                       "): replicate ships WAL frames; run sqlite3 '" + m_options.db_path +
                       "' 'PRAGMA journal_mode=WAL' or pass --enable-wal");
    }
    mode = m_reader->query_text("PRAGMA main.journal_mode=WAL");
    if (mode != "wal") {
      throw Failure("unable to switch database '" + m_options.db_path + "' to WAL mode (it stayed " + mode +
                    "): close the apps that hold it open and run again");
    }
    log(LogLevel::info, "switched the database to WAL mode", {{"db", m_options.db_path}});
  }
  m_page_size = static_cast<uint32_t>(m_reader->query_int("PRAGMA main.page_size"));
  m_db_inode = inode_of(m_options.db_path);
  // SQLite creates -wal and -shm when a connection first reads a WAL database.
  m_reader->query_int("SELECT count(*) FROM sqlite_schema");
  m_wal_fd.reset(::open(m_wal_path.c_str(), O_RDONLY | O_CLOEXEC));
  m_wal_inode = m_wal_fd ? inode_of(m_wal_path) : 0;
  m_shm_fd.reset(::open(m_shm_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!m_shm_fd) {
    throw Failure(
        "unable to open '" + m_shm_path + "': " + std::strerror(errno) +
        ": replicate needs SQLite's shared-memory index (is the app using locking_mode=EXCLUSIVE?)");
  }
  if (m_monitor) m_monitor->lend_shm(m_shm_fd.get());
  if (::mkdir(m_state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Failure("unable to create the state directory '" + m_state_dir + "': " + std::strerror(errno));
  }
}

// The second connection, for the writer lock and checkpoints. Opened only
// while needed: an idle database then holds one connection, not two.
sqlite::Database& Replicator::writer() {
  if (!m_writer) {
    // Whole or not at all: a connection left half set up (no busy handler,
    // checkpointing on close) by a failure here must never be used.
    auto db = std::make_unique<sqlite::Database>(m_options.db_path, SQLITE_OPEN_READWRITE);
    sqlite3_db_config(db->handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    // Retries every millisecond: SQLite's default backoff (up to 100 ms
    // between tries) almost never finds an app that commits in a tight loop
    // between two transactions. Set before the first statement, which may
    // find the app restarting the WAL.
    sqlite3_busy_handler(
        db->handle(),
        [](void*, int tries) {
          if (tries >= k_writer_busy_tries) return 0;
          ::usleep(1000);
          return 1;
        },
        nullptr);
    limit_memory(*db);
    m_writer = std::move(db);
  }
  return *m_writer;
}

// The descriptors close after the connections: closing one of DB-shm drops
// every lock this process holds on the file, SQLite's read locks included.
void Replicator::close_database() {
  if (m_monitor) m_monitor->lend_shm(-1);
  m_reader.reset();
  m_writer.reset();
  m_wal_fd.reset();
  m_shm_fd.reset();
}

// Also opens walship's descriptor of the WAL for the step (see WalForAStep).
bool Replicator::files_replaced() {
  if (inode_of(m_options.db_path) != m_db_inode) return true;
  // SQLite never replaces or deletes the WAL while a connection (ours) is open.
  if (m_wal_fd) return inode_of(m_wal_path) != m_wal_inode;
  m_wal_fd.reset(::open(m_wal_path.c_str(), O_RDONLY | O_CLOEXEC));
  const uint64_t inode = m_wal_fd ? inode_of(m_wal_path) : 0;
  if (m_wal_inode == 0) {
    m_wal_inode = inode;  // the first WAL since the database was opened
    return false;
  }
  return inode != m_wal_inode;
}

void Replicator::reconcile(ReplicaTarget& target) {
  const ReplicaListing listing = list_replica(*target.storage);
  target.lost = true;
  target.state.reset();
  // A delta staged on the state dropped here (a start that failed after it,
  // tried again): the rehash that follows ships what the replica lacks.
  target.staged.reset();
  target.behind.reset();
  target.replica_empty = listing.empty();
  HeaderCache headers(*target.storage);
  target.replica_newest = target.replica_empty ? 0 : newest_txid(listing, headers);
  target.fence_at =
      first_txid_fence(listing.fences, target.replica_newest, target.new_fence, target.lease.generation());
  if (target.replica_empty) return;
  const auto newest = object_ending_at(listing, headers, target.replica_newest);
  if (!newest) throw Failure("replica '" + target.name() + "' lists no object for its newest TXID");
  target.replica_post = fetch_post_checksum(*target.storage, newest->first, newest->second);
  // The compactor reads the headers of the deltas it has yet to compact:
  // without compaction it would read every L0 header for nothing.
  if (!m_options.compaction.empty()) target.compactor.load(listing, headers);
  for (const SnapshotEntry& s : listing.snapshots) {
    target.last_snapshot_ms =
        std::max<int64_t>(target.last_snapshot_ms, static_cast<int64_t>(headers.get(s.key).commit_time_ms));
  }

  std::optional<ShippedState> local = target.store.load();
  target.behind = behind_replica(local, target.replica_newest, target.previous_writer);
  // From here on this process writes the replica, so the local state names
  // it before its first object: a kill between that object and the next save
  // must not look like another node's writes to the next run here.
  if (local && !target.behind && local->writer != this_process().writer) {
    local->writer = this_process().writer;
    target.store.save(*local, {}, false);
  }
  if (target.fence_at) return;  // the first object is a snapshot at the fence
  if (local && local->txid == target.replica_newest && local->checksum == target.replica_post &&
      local->page_size == m_page_size) {
    target.state = std::move(local);
    // Resumable when the WAL still holds the shipped position: same salts,
    // and the frame that ends there is the one shipped. Checked in pin().
    target.lost = false;
    target.verify_position = true;
  }
}

// Records in m_pin where the read transaction m_reader holds sees the WAL
// end: its sqlite3_snapshot is a copy of the wal-index header it read.
void Replicator::record_pin() {
  wal::WalIndexHeader seen;
  sqlite3_snapshot* snapshot = nullptr;
  const int rc = sqlite3_snapshot_get(m_reader->handle(), "main", &snapshot);
  if (rc == SQLITE_OK) {
    std::array<std::byte, wal::k_wal_index_header_size> bytes{};
    static_assert(sizeof(sqlite3_snapshot) == bytes.size());
    std::memcpy(bytes.data(), snapshot, bytes.size());
    sqlite3_snapshot_free(snapshot);
    seen = wal::decode_wal_index_header(bytes);
  } else if (rc == SQLITE_ERROR) {
    // SQLite gives no snapshot of a WAL no transaction was written to yet:
    // the read sees no frames. Its generation is the index's now (a later
    // restart makes replicas rehash rather than guess).
    if (const auto index = wal::read_wal_index_header(m_shm_fd.get(), m_shm_path)) seen.salt = index->salt;
  } else {
    m_reader->fail("unable to read the WAL position of the read transaction", rc);
  }
  const std::optional<wal::WalHeader> header =
      m_wal_fd ? wal::read_wal_header(m_wal_fd.get(), m_wal_path) : std::nullopt;
  m_pin = wal::read_position(seen, m_page_size, header);
}

// Ends the held read transaction and starts a new one. Only for callers that
// hold the writer lock: in between, nothing holds the WAL, so without the
// lock the app could commit, checkpoint everything and restart the WAL over
// frames no replica has shipped.
void Replicator::pin_read_locked() {
  if (sqlite3_get_autocommit(m_reader->handle()) == 0) m_reader->exec("COMMIT");
  begin_read(*m_reader);
  record_pin();
}

wal::WalPosition Replicator::pin() {
  // Replicas that can ship catch up first, so moving the read costs none of
  // them their continuity (see the comment in replicator.h).
  ship_all();
  // The new read begins on the second connection while the old one still
  // holds the WAL, and the old one ends only once every replica has shipped
  // up to the new pin. A read started on a fully checkpointed WAL takes read
  // mark 0, which lets the app restart the WAL at its next write: were the
  // old read ended first, the app could commit and checkpoint in the gap,
  // and the new read would pin frames no replica has shipped, which the
  // restart then drops. The app is never blocked for any of this.
  begin_read(writer());
  std::swap(m_reader, m_writer);
  m_previous_pin = m_pin;
  record_pin();
  try {
    ship_all(m_pin);
  } catch (...) {
    // Keep the old read: it still holds the frames not shipped yet.
    m_reader->exec("COMMIT");
    std::swap(m_reader, m_writer);
    m_writer.reset();
    m_pin = *std::exchange(m_previous_pin, std::nullopt);
    throw;
  }
  m_previous_pin.reset();
  m_reader->set_busy_timeout(k_read_busy_timeout_ms);
  m_writer.reset();  // ends the old read; the next writer() opens afresh
  return m_pin;
}

void Replicator::start() {
  const WalForAStep wal(m_wal_fd);
  if (!m_reader) {
    try {
      open_database();
    } catch (...) {
      close_database();  // half open: the next try starts over
      throw;
    }
  }
  for (auto& target : m_targets) {
    take_lease(*target);
    reconcile(*target);
  }
  // pin() ships from trusted positions while a read still holds the WAL, so
  // no restart of the WAL can slip in between the check and the shipping.
  const wal::WalPosition pinned = pin();
  for (auto& target : m_targets) {
    if (target->lost) resync(*target, pinned);
  }
  ship_all();
  m_started = true;
  for (auto& target : m_targets) {
    report_txid(*target);
    if (log_enabled(LogLevel::info)) {
      log(LogLevel::info, "replicating",
          {{"db", m_options.db_path},
           {"replica", target->name()},
           {"txid", format::txid_hex(target->state->txid)}});
    }
  }
}

std::optional<wal::WalIndexHeader> Replicator::read_index() {
  std::optional<wal::WalIndexHeader> index = wal::read_wal_index_header(m_shm_fd.get(), m_shm_path);
  if (index) return index;
  // The two header copies disagree: a writer died between writing them, or
  // is writing them now. A new read transaction makes SQLite check, and
  // recover the index from the WAL if it is torn. A connection of its own:
  // m_writer may hold the writer lock or, inside pin(), the old read.
  // Its first statement may find the app mid-commit too: set up before it,
  // and a busy answer means look again next step, not a failed step.
  sqlite::Database probe(m_options.db_path, SQLITE_OPEN_READWRITE);
  sqlite3_db_config(probe.handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  probe.set_busy_timeout(k_truncate_busy_timeout_ms);
  try {
    limit_memory(probe);
    begin_read(probe);
    probe.exec("COMMIT");
  } catch (const Error&) {
    return std::nullopt;  // busy recovering or restarting: look again next step
  }
  return wal::read_wal_index_header(m_shm_fd.get(), m_shm_path);
}

// The header of the delta that takes `state` to the next TXID.
format::FileHeader Replicator::next_delta_header(const ShippedState& state, uint32_t db_pages) const {
  format::FileHeader file;
  file.kind = format::FileKind::delta;
  file.page_size = state.page_size;
  file.min_txid = state.txid + 1;
  file.max_txid = state.txid + 1;
  file.db_pages = db_pages;
  file.commit_time_ms = static_cast<uint64_t>(m_clock());
  file.pre_checksum = state.checksum;
  return file;
}

// Empties the spool file deltas are written to before upload.
// The one way a delta reaches a replica, for WAL frames and for a rehash
// alike: the header chaining onto the target's state and the pages (write()
// returns the whole-database checksum after them), written to a spool of its
// own (opened for it: an idle database holds none) and staged in the target
// for upload_staged(). The caller then moves the target's state on.
Replicator::ShippedDelta Replicator::stage_delta(ReplicaTarget& target, uint32_t db_pages,
                                                 const DeltaPages& pages) {
  const format::FileHeader file = next_delta_header(*target.state, db_pages);
  UniqueFd spool = anonymous_file(m_state_dir);
  FdSink sink(spool.get(), "delta spool in '" + m_state_dir + "'");
  format::ReplicaWriter writer(sink, file, m_options.delta_zstd_level);
  const uint64_t checksum = pages.write(writer);
  writer.finish(checksum);
  const DeltaRecord record{format::l0_delta_key(file.min_txid), 0, file.min_txid, file.max_txid,
                           file.commit_time_ms};
  const ShippedDelta shipped{file.max_txid, checksum, writer.bytes_written()};
  target.staged =
      ReplicaTarget::Staged{std::move(spool), shipped.bytes, record, pages.commits, {}, false, false, file};
  return shipped;
}

// A delta durable in the target's replica: compacted later, counted now.
void Replicator::record_delta(ReplicaTarget& target, const DeltaRecord& record, uint64_t commits,
                              size_t pages, int spool, uint64_t bytes) {
  target.compactor.add(record, spool, bytes);
  report([&](ReplicateStatus& s) {
    ++s.shipped_deltas;
    s.shipped_transactions += commits;
    s.shipped_pages += pages;
    s.replicas[target.slot].txid = record.max_txid;
  });
  target.uploaded_txid = record.max_txid;
}

// Uploads the target's staged delta, if any, and saves the local state that
// counts it. On failure it stays staged (the error propagates): nothing
// else of the target ships before it, and the next try sends the same
// bytes, so an earlier try that landed is recognised as this one.
bool Replicator::upload_staged(ReplicaTarget& target) {
  if (!target.staged) return true;
  ReplicaTarget::Staged& staged = *target.staged;
  bool uploaded = false;
  try {
    uploaded = upload(target, staged.spool.get(), staged.record.key, staged.bytes, staged.attempted);
  } catch (const StorageError&) {
    staged.attempted = true;
    throw;
  }
  if (!uploaded) {
    target.staged.reset();  // another process took the TXID: upload() reconciled the target
    return false;
  }
  if (retention_on()) target.headers.add(staged.record.key, staged.header);
  record_delta(target, staged.record, staged.commits, staged.changed.size(), staged.spool.get(),
               staged.bytes);
  target.store.save(*target.state, staged.changed, staged.full);
  if (log_enabled(LogLevel::debug)) {
    log(LogLevel::debug, "shipped",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"txid", format::txid_hex(staged.record.max_txid)},
         {"commits", staged.commits},
         {"pages", staged.changed.size()},
         {"bytes", staged.bytes}});
  }
  target.staged.reset();
  return true;
}

// Whether a restart of the WAL generation `position` is in can have dropped
// only frames before it: it reached the end a read walship holds sees in that
// generation. SQLite restarts the WAL only once every frame is checkpointed,
// and checkpoints no frame past a read's end while the read is held (a read
// at mark 0 blocks every checkpoint), so such a restart drops nothing past
// the read's end. While pin() moves the read, both reads are held.
bool Replicator::reached_a_pin(const wal::WalPosition& position) const {
  const auto reached = [&](const wal::WalPosition& pin) {
    return position.same_generation(pin) && position.frame_index() >= pin.frame_index();
  };
  return reached(m_pin) || (m_previous_pin && reached(*m_previous_pin));
}

std::string Replicator::retrying_error() const {
  for (const auto& target : m_targets) {
    if (std::string error = target->storage->retrying_error(); !error.empty()) return error;
  }
  return {};
}

// The commit counter of `at_start` (the wal-index read when the step began)
// if every replica holds every commit it counted: in the same WAL
// generation up to its last frame, or in a later generation (a replica
// follows SQLite into a new one only after shipping the old one up to where
// the restart cut it, see replicator.h), or at the held read's end when the
// WAL was restarted under way and nothing is in the new one yet.
std::optional<uint32_t> Replicator::covered(const std::optional<wal::WalIndexHeader>& at_start) {
  if (!at_start) return std::nullopt;
  const std::optional<wal::WalHeader> header =
      m_wal_fd ? wal::read_wal_header(m_wal_fd.get(), m_wal_path) : std::nullopt;
  const bool start_is_current = header && wal::wal_index_matches(*at_start, *header);
  for (const auto& target : m_targets) {
    if (target->lost || target->staged || !target->state) return std::nullopt;
    const wal::WalPosition& at = target->state->wal;
    if (at.salt1 == at_start->salt1() && at.salt2 == at_start->salt2()) {
      if (at.frame_index() < at_start->max_frame) return std::nullopt;
    } else if (header && at.same_generation(*header) && !start_is_current) {
      continue;  // the replica followed the WAL into a newer generation
    } else if (!(at_start->max_frame == 0 && reached_a_pin(at))) {
      return std::nullopt;
    }
  }
  // Last, after every upload: a writer paused past its lease, or taken over
  // while it shipped, must not call durable what restores will not follow.
  try {
    for (const auto& target : m_targets) {
      if (!target->lease.confirm_held()) return std::nullopt;
    }
  } catch (const StorageError&) {
    return std::nullopt;  // not confirmed: asked again at the next step
  }
  return at_start->change;
}

// The whole transactions the target has not shipped yet (of those the read
// pinned at `cap` sees, when given); nullopt when there are none, or when the
// target's position turns out to be lost (target.lost is then set and the
// caller rehashes).
std::optional<wal::CommittedFrames> Replicator::unshipped_frames(ReplicaTarget& target,
                                                                 const std::optional<wal::WalPosition>& cap) {
  if (target.lost) return std::nullopt;
  if (!m_wal_fd && target.verify_position) {
    target.lost = true;  // the WAL that held the saved position is gone
    return std::nullopt;
  }
  if (!m_wal_fd) return std::nullopt;
  ShippedState& state = *target.state;
  if (target.verify_position) {
    // A position from the local state: the WAL must still hold it.
    target.verify_position = false;
    if (!wal::wal_holds(m_wal_fd.get(), m_wal_path, state.wal)) {
      log(LogLevel::info, "the WAL moved on while walship was not running; rehashing the database",
          {{"db", m_options.db_path}, {"replica", target.name()}});
      target.lost = true;
      return std::nullopt;
    }
  }
  const std::optional<wal::WalHeader> header = wal::read_wal_header(m_wal_fd.get(), m_wal_path);
  if (!header) return std::nullopt;  // no frames since the WAL was truncated, or none yet
  if (header->page_size != state.page_size) {
    target.lost = true;
    return std::nullopt;
  }
  if (!state.wal.same_generation(*header)) {
    // SQLite restarted the WAL. A replica that had reached a held read's end
    // goes on in the new generation; any other lost frames.
    if (!reached_a_pin(state.wal)) {
      log(LogLevel::warn, "the WAL was restarted before walship read all of it; rehashing the database",
          {{"db", m_options.db_path}, {"replica", target.name()}});
      target.lost = true;
      return std::nullopt;
    }
    state.wal = wal::WalPosition::start_of(*header);
  }
  const std::optional<wal::WalIndexHeader> index = read_index();
  if (!index || !wal::wal_index_matches(*index, *header)) return std::nullopt;  // a restart is under way
  // A read pinned in an earlier generation (at mark 0, reading the database
  // file) sees none of this one.
  if (cap && !state.wal.same_generation(*cap)) return std::nullopt;
  const uint64_t max_frame = std::min<uint64_t>(index->max_frame, cap ? cap->frame_index() : UINT64_MAX);
  if (max_frame <= state.wal.frame_index()) return std::nullopt;
  wal::CommittedFrames frames = wal::scan_wal(m_wal_fd.get(), m_wal_path, *header, state.wal, max_frame);
  if (frames.end.frame_index() != max_frame) {
    // Frames SQLite counts as committed do not chain on: the WAL was
    // restarted over them while being read.
    log(LogLevel::warn, "the WAL changed while walship read it; rehashing the database",
        {{"db", m_options.db_path}, {"replica", target.name()}});
    target.lost = true;
    return std::nullopt;
  }
  return frames;
}

void Replicator::ship_new_frames(ReplicaTarget& target, const std::optional<wal::WalPosition>& cap,
                                 bool defer) {
  if (target.staged) {
    if (defer) return;  // one staged delta at a time: the lock holder does not wait for an upload
    upload_staged(target);
    if (!target.state) return;
  }
  const std::optional<wal::CommittedFrames> frames = unshipped_frames(target, cap);
  if (!frames) return;
  ShippedState& state = *target.state;
  const uint32_t lock_page = format::lock_page(state.page_size);
  // The pages the delta holds: every page the frames wrote, but past the
  // database's end or the lock page.
  std::vector<std::pair<uint32_t, uint64_t>> pages;  // (pgno, offset in the WAL)
  uint64_t new_pages_written = 0;
  for (const auto& [pgno, offset] : frames->pages) {
    if (pgno > frames->db_pages || pgno == lock_page) continue;
    pages.emplace_back(pgno, offset);
    if (pgno > state.db_pages) ++new_pages_written;
  }
  if (frames->db_pages > state.db_pages) {
    uint64_t new_pages = frames->db_pages - state.db_pages;
    if (lock_page > state.db_pages && lock_page <= frames->db_pages) --new_pages;
    if (new_pages_written != new_pages) {
      // The database grew by pages no frame holds: not something SQLite
      // does; rehash rather than ship a delta that would restore zeros.
      log(LogLevel::warn, "the WAL grew the database without writing the new pages; rehashing",
          {{"db", m_options.db_path}, {"replica", target.name()}});
      target.lost = true;
      return;
    }
  }

  std::vector<uint64_t> hashes;  // hashes[i]: the new hash of pages[i]
  const DeltaPages delta{pages.size(), frames->commits, [&](format::ReplicaWriter& writer) {
                           std::vector<std::byte> page(state.page_size);
                           uint64_t checksum = state.checksum;
                           for (const auto& [pgno, offset] : pages) {
                             if (pread_full(m_wal_fd.get(), page, offset, m_wal_path) != page.size())
                               throw Failure("WAL '" + m_wal_path + "' ended inside a committed frame");
                             const uint64_t hash = format::page_hash(pgno, page);
                             checksum ^= (pgno <= state.db_pages ? state.page_hashes[pgno - 1] : 0) ^ hash;
                             writer.add_page(pgno, page);
                             hashes.push_back(hash);
                           }
                           for (uint32_t pgno = frames->db_pages + 1; pgno <= state.db_pages; ++pgno)
                             checksum ^= state.page_hashes[pgno - 1];
                           return checksum;
                         }};
  // Staged first, uploaded after (at once, or once the writer lock is released).
  const ShippedDelta shipped = stage_delta(target, frames->db_pages, delta);

  // The state moves on in place: only the changed pages' hashes are saved
  // (a staged delta's once it is uploaded).
  std::vector<uint32_t> changed;
  changed.reserve(pages.size());
  state.page_hashes.resize(frames->db_pages, 0);
  for (size_t i = 0; i < pages.size(); ++i) {
    state.page_hashes[pages[i].first - 1] = hashes[i];
    changed.push_back(pages[i].first);
  }
  state.txid = shipped.txid;
  state.checksum = shipped.checksum;
  state.db_pages = frames->db_pages;
  state.wal = frames->end;
  m_shipped_pages += pages.size();
  target.staged->changed = std::move(changed);
  if (!defer) upload_staged(target);
}

bool Replicator::upload(ReplicaTarget& target, int spool, const std::string& key, uint64_t size, bool retry) {
  FdSource source(spool, size, "spool in '" + m_state_dir + "'");
  if (target.storage->put_if_absent(key, source)) return true;
  if (retry) {
    // An earlier try of this very upload may have landed and lost its answer.
    source.rewind();
    ComparingSink compare(source);
    if (target.storage->get(key, compare) && compare.equal()) return true;
  }
  target.lease.renew_if_due(INT64_MAX);  // taken over? then fenced: FencedError
  log(LogLevel::error,
      "another process wrote the next TXID of this replica: is a second replicate running on it? "
      "walship will check the replica again and write a new snapshot",
      {{"db", m_options.db_path}, {"replica", target.name()}, {"key", key}});
  reconcile(target);
  return false;
}

void Replicator::resync(ReplicaTarget& target, const wal::WalPosition& pinned) {
  upload_staged(target);  // the next TXID is the staged delta's
  if (!target.state) {
    adopt_replica(target, pinned);
    return;
  }
  report([](ReplicateStatus& s) { ++s.lost_continuity; });
  if (target.state->page_size != m_page_size) {
    write_snapshot(target, target.state->txid + 1, pinned, false);
    return;
  }
  ship_difference(target, pinned);
}

// A target without a shipped state: a first snapshot for an empty replica;
// else the database rehashed and compared with the replica's newest state,
// continuing its TXID sequence when equal (a restored database) and starting
// a new one with a snapshot when not.
void Replicator::adopt_replica(ReplicaTarget& target, const wal::WalPosition& pinned) {
  std::vector<uint64_t> hashes;
  uint64_t checksum = 0;
  if (!target.replica_empty) {
    hashes = hash_database(*m_reader, m_page_size);
    checksum = xor_all(hashes);
    if (checksum != target.replica_post && target.behind && !m_options.take_over) {
      target.lease.release();
      throw behind_error(m_options.db_path, target.name(), *target.behind, target.replica_newest,
                         ", or pass --take-over to make this node's data the replica's newest");
    }
  }
  if (target.fence_at) {
    write_fence(target);
    write_snapshot(target, *target.fence_at, pinned, false);
    target.fence_at.reset();
    return;
  }
  if (target.replica_empty) {
    write_snapshot(target, 1, pinned, false);
    return;
  }
  if (checksum != target.replica_post) {
    report([](ReplicateStatus& s) { ++s.lost_continuity; });
    log(LogLevel::info, "the database differs from the replica's newest state; writing a new snapshot",
        {{"db", m_options.db_path}, {"replica", target.name()}});
    write_snapshot(target, target.replica_newest + 1, pinned, false);
    return;
  }
  ShippedState state;
  state.page_size = m_page_size;
  state.txid = target.replica_newest;
  state.checksum = checksum;
  state.db_pages = static_cast<uint32_t>(hashes.size());
  state.page_hashes = std::move(hashes);
  state.wal = pinned;
  target.trust(std::move(state));
  report_txid(target);
}

// Announces a takeover's fence before its snapshot: from then on every
// reader ignores what the previous writer still writes between the newest
// TXID seen and the fence (replica_listing.h).
void Replicator::write_fence(ReplicaTarget& target) {
  if (!target.new_fence) return;
  const format::FenceInfo fence{target.replica_newest, *target.fence_at};
  walship::write_fence(*target.storage, fence);
  target.new_fence = false;
  log(LogLevel::warn, "fenced off the previous writer: restore points go on from a new snapshot",
      {{"db", m_options.db_path},
       {"replica", target.name()},
       {"after", format::txid_hex(fence.after)},
       {"fence", format::txid_hex(fence.fence)}});
}

// After lost continuity: the database rehashed, and exactly the pages that
// differ from the shipped state shipped as one delta (none when nothing
// differs), so the chain goes on without a snapshot.
void Replicator::ship_difference(ReplicaTarget& target, const wal::WalPosition& pinned) {
  const ShippedState& state = *target.state;
  std::vector<uint64_t> hashes = hash_database(*m_reader, m_page_size);
  const auto db_pages = static_cast<uint32_t>(hashes.size());
  const ShippedState::Difference diff = state.difference(hashes);
  std::optional<ShippedDelta> shipped;
  if (!diff.changed.empty() || db_pages != state.db_pages) {
    const DeltaPages delta{
        diff.changed.size(), 0, [&](format::ReplicaWriter& writer) {
          sqlite::Statement read(*m_reader, "SELECT data FROM sqlite_dbpage('main') WHERE pgno = ?1");
          for (uint32_t pgno : diff.changed) {
            read.reset();
            read.bind_int64(1, pgno);
            if (!read.step())
              throw Failure("database '" + m_options.db_path + "' has no page " + std::to_string(pgno));
            writer.add_page(pgno, read.column_blob(0));
          }
          return diff.checksum;
        }};
    shipped = stage_delta(target, db_pages, delta);
  }
  ShippedState next;
  next.page_size = m_page_size;
  next.txid = shipped ? shipped->txid : state.txid;
  next.checksum = diff.checksum;
  next.db_pages = db_pages;
  next.page_hashes = std::move(hashes);
  next.wal = pinned;
  if (!shipped) {
    target.trust(std::move(next));
    return;
  }
  // Staged like the WAL's deltas: a failed upload goes up again as it is at
  // the next step, not after another rehash.
  target.move_on(std::move(next));
  target.staged->full = true;
  if (!upload_staged(target)) return;  // another writer's TXID: reconciled
  log(LogLevel::info, "shipped the pages that changed while continuity was lost",
      {{"db", m_options.db_path},
       {"replica", target.name()},
       {"txid", format::txid_hex(shipped->txid)},
       {"pages", diff.changed.size()}});
}

void Replicator::write_snapshot(ReplicaTarget& target, uint64_t txid, const wal::WalPosition& pinned,
                                bool check) {
  std::vector<uint64_t> hashes;
  SpooledSnapshot spool = spool_snapshot(*m_reader, txid, m_options.snapshot_zstd_level, false, m_state_dir,
                                         &hashes, static_cast<uint64_t>(m_clock()));
  if (check && spool.checksum != target.state->checksum) {
    log(LogLevel::error,
        "the database does not match the state walship shipped (was it changed without SQLite?); writing "
        "a snapshot as a new TXID",
        {{"db", m_options.db_path}, {"replica", target.name()}});
    write_snapshot(target, txid + 1, pinned, false);
    return;
  }
  const std::string key = format::snapshot_key(txid);
  FdSource source(spool.fd.get(), spool.size, "snapshot spool for '" + m_options.db_path + "'", true);
  if (!target.storage->put_if_absent(key, source)) {
    if (check) return;  // this state's snapshot is already there
    throw Failure("snapshot " + key + " of replica '" + target.name() +
                  "' appeared while walship was writing it: is a second replicate running on it? stop it and "
                  "run again");
  }
  if (retention_on()) target.headers.add(key, spool.header);
  ShippedState state;
  state.page_size = spool.header.page_size;
  state.txid = txid;
  state.checksum = spool.checksum;
  state.db_pages = spool.header.db_pages;
  state.page_hashes = std::move(hashes);
  state.wal = pinned;
  target.trust(std::move(state));
  target.replica_empty = false;
  target.last_snapshot_ms = static_cast<int64_t>(spool.header.commit_time_ms);
  report([&](ReplicateStatus& s) {
    ++s.snapshots;
    s.replicas[target.slot].txid = txid;
  });
  target.uploaded_txid = txid;
  if (log_enabled(LogLevel::info)) {
    log(LogLevel::info, "snapshot written",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"txid", format::txid_hex(txid)},
         {"pages", spool.header.db_pages},
         {"bytes", spool.size}});
  }
}

void Replicator::ship_all(const std::optional<wal::WalPosition>& cap) {
  std::string first_error;
  bool storage_only = true;  // every error was the storage's...
  bool transient = true;     // ...and each may pass
  for (auto& target : m_targets) {
    if (target->lost && !target->staged) continue;  // a lost one only uploads what it staged
    try {
      ship_new_frames(*target, cap);
    } catch (const StorageError& e) {
      if (first_error.empty()) first_error = e.what();
      transient = transient && e.transient();
    } catch (const Error& e) {
      if (first_error.empty()) first_error = e.what();
      storage_only = false;
    }
  }
  if (!first_error.empty()) {
    if (storage_only) throw StorageError(first_error, transient);
    throw Failure(first_error);
  }
}

// walship's checkpointing (see replicator.h): once the WAL holds
// checkpoint_pages frames not yet backfilled, PASSIVE rounds without the
// writer lock, then, when a restart is due, one under it.
void Replicator::checkpoint_if_due(int64_t now) {
  const std::optional<wal::WalIndexHeader> index = wal::read_wal_index_header(m_shm_fd.get(), m_shm_path);
  const bool asked = m_checkpoint_requested.exchange(false);
  if (!index || (!asked && index->max_frame < m_options.checkpoint_pages)) return;
  if (wal::read_wal_backfilled(m_shm_fd.get(), m_shm_path) >= index->max_frame) return;
  const bool restart_due = asked || now >= m_last_restart_ms + k_restart_interval_ms ||
                           index->max_frame >= m_options.truncate_pages / 4;

  // Most of the copying happens without the writer lock: the read moves to
  // the WAL's end (all shipped), and a checkpoint from the other connection
  // copies up to there while the app keeps committing. Before the locked
  // step, again while the app committed much meanwhile.
  int wal_frames = 0;
  int checkpointed = 0;
  for (int round = 0; round < k_unlocked_checkpoint_rounds; ++round) {
    pin();
    const int rc = passive_checkpoint(writer(), k_checkpoint_lock_tries, wal_frames, checkpointed);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) m_writer->fail("unable to checkpoint", rc);
    if (!restart_due || wal_frames < 0 || wal_frames - checkpointed < k_locked_checkpoint_frames) break;
  }
  if (!restart_due) {
    m_writer.reset();
    return;
  }
  m_last_restart_ms = now;
  checkpoint_locked();
}

// The checkpoint under the writer lock, after which the app's next commit
// restarts the WAL; past truncate_pages, a TRUNCATE. Under the lock walship
// does only local work, bounded: the frames committed since the last ship
// are staged (written to a spool of their own), and go up once the lock is
// released, so a store that stalls never stalls the app's commits.
void Replicator::checkpoint_locked() {
  // The writer lock keeps the app from committing between the last ship and
  // the new read; an app that holds the lock all the time just postpones this.
  const int64_t wait_start = m_clock();
  const int lock_rc = sqlite3_exec(writer().handle(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  if (lock_rc == SQLITE_BUSY) {
    log(LogLevel::debug, "checkpoint postponed: the app holds the writer lock", {{"db", m_options.db_path}});
    m_writer.reset();
    return;
  }
  if (lock_rc != SQLITE_OK) m_writer->fail("unable to take the writer lock", lock_rc);
  const int64_t lock_start = m_clock();
  int wal_frames = -1;
  int checkpointed = -1;
  const char* postponed = nullptr;
  try {
    if (!stage_all()) {
      postponed = "checkpoint postponed: too much to ship since the last step, or an upload pending";
    } else {
      m_reader->exec("COMMIT");
      const int rc = passive_checkpoint(*m_reader, k_locked_checkpoint_lock_tries, wal_frames, checkpointed);
      pin_read_locked();
      if (rc != SQLITE_OK && rc != SQLITE_BUSY) m_reader->fail("unable to checkpoint", rc);
      // Locked out: the app's own checkpoint (a RESTART waiting for
      // walship's read, say) holds the checkpoint lock. Try again next step;
      // giving up on the WAL here would cost every replica a rehash.
      if (wal_frames < 0) postponed = "checkpoint postponed: another checkpoint holds the lock";
    }
  } catch (...) {
    m_writer->exec("ROLLBACK");
    m_writer.reset();
    throw;
  }
  m_writer->exec("ROLLBACK");
  m_writer.reset();
  const int64_t lock_ms = m_clock() - lock_start;
  if (postponed) {
    log(LogLevel::debug, postponed, {{"db", m_options.db_path}, {"writer_lock_ms", lock_ms}});
    ship_all();  // anything staged before the postponement
    return;
  }
  report([](ReplicateStatus& s) { ++s.checkpoints_passive; });
  if (log_enabled(LogLevel::debug)) {
    log(LogLevel::debug, "checkpoint",
        {{"db", m_options.db_path},
         {"mode", "passive"},
         {"wal_frames", wal_frames},
         {"checkpointed", checkpointed},
         {"writer_lock_wait_ms", lock_start - wait_start},
         {"writer_lock_ms", lock_ms}});
  }
  // Everything is checkpointed, so the new read got read mark 0, which
  // keeps the app's own checkpoints from copying anything; SQLite sorts
  // every new frame for each of them (one per commit past its threshold)
  // before finding out. Once the app's next write restarts the WAL, step()
  // reads again, with a mark above 0.
  if (checkpointed >= wal_frames) m_read_mark_zero = true;
  ship_all();  // the deltas staged under the lock
  if (checkpointed < wal_frames && static_cast<uint32_t>(wal_frames) >= m_options.truncate_pages)
    truncate_wal();
}

// Under the writer lock: stages each replica's frames not shipped yet; false
// (nothing staged for any) when that is more than a bounded amount of work
// or a staged delta still waits for its upload. Past half the hard limit
// (truncate_pages) the amount is not bounded: an app that commits faster
// than the unlocked ships catch up (a write flood) always leaves more than
// the bound behind them, and the WAL would grow without end. There the app
// waits while its frames are staged, and the WAL restarts.
bool Replicator::stage_all() {
  const std::optional<wal::WalIndexHeader> index = wal::read_wal_index_header(m_shm_fd.get(), m_shm_path);
  if (!index) return false;
  const bool flood = index->max_frame >= m_options.truncate_pages / 2;
  for (auto& target : m_targets) {
    if (target->staged) return false;
    if (target->lost || !target->state || flood) continue;
    const wal::WalPosition& at = target->state->wal;
    const bool same_generation = at.salt1 == index->salt1() && at.salt2 == index->salt2();
    if (index->max_frame > (same_generation ? at.frame_index() : 0) + k_locked_checkpoint_frames)
      return false;
  }
  for (auto& target : m_targets) {
    if (!target->lost) ship_new_frames(*target, std::nullopt, true);
  }
  return true;
}

// Readers of the app keep the WAL from being checkpointed to the end and it
// is past the hard limit: TRUNCATE waits for them (at most the busy
// timeout). The app may commit between releasing the writer lock and the
// checkpoint taking it, so every replica rehashes afterwards.
void Replicator::truncate_wal() {
  int wal_frames = 0;
  int checkpointed = 0;
  m_reader->exec("COMMIT");
  m_reader->set_busy_timeout(k_truncate_busy_timeout_ms);
  const int rc = sqlite3_wal_checkpoint_v2(m_reader->handle(), "main", SQLITE_CHECKPOINT_TRUNCATE,
                                           &wal_frames, &checkpointed);
  m_reader->set_busy_timeout(k_read_busy_timeout_ms);
  pin_read_locked();  // without the lock: every replica rehashes below
  if (rc == SQLITE_OK) report([](ReplicateStatus& s) { ++s.checkpoints_truncate; });
  log(rc == SQLITE_OK ? LogLevel::info : LogLevel::warn,
      rc == SQLITE_OK ? "WAL truncated past the hard limit"
                      : "TRUNCATE checkpoint past the hard limit was busy",
      {{"db", m_options.db_path}, {"wal_frames", wal_frames}});
  for (auto& target : m_targets) target->lost = true;
}

// A snapshot every snapshot-interval, or now when `requested`; true when
// written.
bool Replicator::scheduled_snapshot(ReplicaTarget& target, int64_t now, bool requested) {
  if (target.lost || !target.state) return false;
  if (!requested &&
      (m_options.snapshot_interval_ms <= 0 || now < target.last_snapshot_ms + m_options.snapshot_interval_ms))
    return false;
  const wal::WalPosition pinned = pin();
  // The snapshot is of the pinned state: the replica ships exactly up to it,
  // or, when the read is at mark 0 and the app restarted the WAL since, to
  // the start of the new generation (the read sees all of the pin's).
  ship_new_frames(target, pinned);
  if (target.lost || !target.state) return false;  // rehashes at the next step
  const wal::WalPosition& at = target.state->wal;
  if (at.same_generation(pinned) ? at.frame_index() != pinned.frame_index() : at.frame_index() != 0) {
    return false;  // a restart under way kept it from the pin; next time
  }
  write_snapshot(target, target.state->txid, at, true);
  target.last_snapshot_ms = now;
  return true;
}

void Replicator::request_snapshot(const std::string& replica_url) {
  std::lock_guard lock(m_request_mutex);
  m_snapshot_request = replica_url;
}

std::optional<std::string> Replicator::take_snapshot_answer() {
  std::lock_guard lock(m_request_mutex);
  return std::exchange(m_snapshot_answer, std::nullopt);
}

// Serves a request_snapshot(): a snapshot of the asked replica now, answered
// with its TXID. A request that arrived after this step's check waits for
// the next step.
void Replicator::answer_snapshot_request(int64_t now) {
  std::optional<std::string> url;
  {
    std::lock_guard lock(m_request_mutex);
    url = std::exchange(m_snapshot_request, std::nullopt);
  }
  if (!url) return;
  std::string answer = "error replicate ships '" + m_options.db_path + "' to no replica '" + *url + "'";
  const auto set_answer = [&] {
    std::lock_guard lock(m_request_mutex);
    m_snapshot_answer = answer;
  };
  try {
    for (auto& target : m_targets) {
      if (!url->empty() && target->storage->url() != *url) continue;
      if (!scheduled_snapshot(*target, now, true)) {
        if (++m_snapshot_tries < k_snapshot_tries) {
          // Rehashing, or a WAL restart under way: the next step (at once) tries again.
          std::lock_guard lock(m_request_mutex);
          if (!m_snapshot_request) m_snapshot_request = url;
          return;
        }
        answer = "error replica '" + target->name() + "' is being resynchronised; try again in a moment";
        break;
      }
      answer = "ok " + format::txid_hex(target->state->txid);
    }
  } catch (const std::exception& e) {
    answer = std::string("error ") + e.what();
    m_snapshot_tries = 0;
    set_answer();
    throw;
  }
  m_snapshot_tries = 0;
  set_answer();
}

std::optional<int64_t> Replicator::step(int64_t now) {
  const WalForAStep wal(m_wal_fd);
  m_covered_change.reset();
  const bool ack = m_ack_requested.exchange(false);
  if (!m_started) start();
  // Nothing is written under a lease that may have passed to another writer.
  for (auto& target : m_targets) target->lease.renew_if_due(now);
  // Every commit SQLite counted by now is shipped once this step succeeds.
  const std::optional<wal::WalIndexHeader> index_at_start =
      m_shm_fd ? wal::read_wal_index_header(m_shm_fd.get(), m_shm_path) : std::nullopt;
  const bool replaced = files_replaced();
  if (replaced) {
    log(LogLevel::warn, "the database or its WAL was replaced underneath walship; rehashing",
        {{"db", m_options.db_path}});
    close_database();
    try {
      open_database();
    } catch (...) {
      close_database();
      m_started = false;  // start() again, once the database is back
      throw;
    }
    for (auto& target : m_targets) target->lost = true;
  }
  ship_all();
  if (m_read_mark_zero) {
    if (const auto header = m_wal_fd ? wal::read_wal_header(m_wal_fd.get(), m_wal_path) : std::nullopt;
        header && !m_pin.same_generation(*header)) {
      pin();
      m_read_mark_zero = false;
    }
  }
  bool any_lost = false;
  for (auto& target : m_targets) any_lost = any_lost || target->lost;
  if (any_lost) {
    const wal::WalPosition pinned = pin();
    for (auto& target : m_targets) {
      if (target->lost) resync(*target, pinned);
    }
  }
  // Not when the files were replaced: the index counted another file's commits.
  if (ack && !replaced) m_covered_change = covered(index_at_start);
  // covered() may have found the lease taken over: nothing more is written.
  for (auto& target : m_targets) target->lease.renew_if_due(now);
  checkpoint_if_due(now);
  report_storage_warnings();
  std::optional<int64_t> next;
  auto sooner = [&](int64_t t) { next = next ? std::min(*next, t) : t; };
  if (m_read_mark_zero) sooner(now + k_repin_ms);
  for (auto& target : m_targets) sooner(target->lease.renew_due_ms());
  // Pages are not read again soon: hand the page cache back.
  sqlite3_db_release_memory(m_reader->handle());
  answer_snapshot_request(now);
  for (auto& target : m_targets) {
    scheduled_snapshot(*target, now, false);
    if (m_options.snapshot_interval_ms > 0) sooner(target->last_snapshot_ms + m_options.snapshot_interval_ms);
    if (auto due = maintain(*target, now)) sooner(*due);
  }
  report([&](ReplicateStatus& s) {
    s.change_known = index_at_start.has_value();
    if (index_at_start) s.shipped_change = index_at_start->change;
  });
  return next;
}

// The replica's maintenance: the compacted files that are due, then
// retention once per interval (after compaction, whose fresh files let older
// ones go). Both read and write many objects, so they run on a thread of
// their own, one run at a time per replica, while the steps ship on: a
// store answering in 50 ms made a minute's compaction stall shipping for
// seconds. Returns when to look again.
std::optional<int64_t> Replicator::maintain(ReplicaTarget& target, int64_t now) {
  try {
    if (!target.maintenance.collect()) return now + k_maintenance_poll_ms;
  } catch (const std::exception& e) {
    log(LogLevel::warn, "unable to maintain the replica (compaction, retention); trying again later",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"error", e.what()},
         {"retry_in", render_duration_ms(k_maintenance_retry_ms)}});
    target.maintenance_retry_at = now + k_maintenance_retry_ms;
  }
  report_compactions(target);
  if (now < target.maintenance_retry_at) return target.maintenance_retry_at;
  const std::optional<int64_t> compact_at = target.compactor.due(m_options);
  const bool compact = compact_at && *compact_at <= now;
  const std::optional<uint64_t> prune_at = retention_due(target, now);
  if (!compact && !prune_at) return maintenance_due(target);
  if (!m_options.compact_in_background) {
    maintenance(target, now, compact, prune_at, nullptr);
    report_compactions(target);
    return maintenance_due(target);
  }
  target.maintenance.start([this, &target, now, compact, prune_at](const std::atomic<bool>& stop) {
    maintenance(target, now, compact, prune_at, &stop);
  });
  return now + k_maintenance_poll_ms;
}

// When maintain() has work next: a compacted file's span over, or retention.
std::optional<int64_t> Replicator::maintenance_due(const ReplicaTarget& target) const {
  std::optional<int64_t> next = target.compactor.due(m_options);
  if (retention_on() && target.next_retention_ms != 0)
    next = next ? std::min(*next, target.next_retention_ms) : target.next_retention_ms;
  return next;
}

// One run of maintain()'s, on any thread: touches only the compactor and the
// storage (both safe to share with the steps) and reports.
void Replicator::maintenance(ReplicaTarget& target, int64_t now, bool compact,
                             std::optional<uint64_t> prune_at, const std::atomic<bool>* stop) {
  if (compact) target.compactor.run(*target.storage, m_options, now, m_state_dir, stop);
  if (prune_at && !(stop && *stop)) retention(target, *prune_at, stop);
}

void Replicator::report_compactions(ReplicaTarget& target) {
  if (const uint64_t written = target.compactor.written(); written != target.compactions_reported) {
    report([&](ReplicateStatus& s) { s.compactions += written - target.compactions_reported; });
    target.compactions_reported = written;
  }
}

// Whether retention runs now, and if so the TXID shipped so far (a prune
// thins only a chain whose tip this replicator holds); moves the next run on.
std::optional<uint64_t> Replicator::retention_due(ReplicaTarget& target, int64_t now) {
  if (!retention_on()) return std::nullopt;
  if (target.next_retention_ms == 0)
    target.next_retention_ms = now + std::min(k_first_retention_ms, m_options.retention_interval_ms);
  if (now < target.next_retention_ms) return std::nullopt;
  if (target.lost || !target.state) {
    target.next_retention_ms = now + k_maintenance_retry_ms;  // once the replica is resynchronised
    return std::nullopt;
  }
  target.next_retention_ms = now + m_options.retention_interval_ms;
  return target.state->txid;
}

// Prunes the replica with the configured policy, with the routine of walship
// prune, while the replica's newest TXID is one this replicator shipped: at
// least `shipped` (what it had when the run began), at most what it has
// shipped by the time of the listing. Any other writer extending the chain
// would be past that.
void Replicator::retention(ReplicaTarget& target, uint64_t shipped, const std::atomic<bool>* stop) {
  PruneOptions prune;
  prune.policy = m_options.retention;
  prune.stop = stop;
  prune.headers = &target.headers;
  uint64_t shipped_now = shipped;
  prune.only_if_newest = [&](uint64_t newest) {
    shipped_now = target.uploaded_txid;
    return newest >= shipped && newest <= shipped_now;
  };
  std::vector<std::string> deleted;
  prune.on_deleted = [&](const PruneObject& o) {
    deleted.push_back(o.key);
    report([](ReplicateStatus& s) { ++s.pruned_objects; });
  };
  PruneResult result;
  try {
    result = prune_replica(prune, *target.storage);
  } catch (const StorageError&) {
    throw;
  } catch (const Error& e) {
    log(LogLevel::error, "unable to apply retention; nothing deleted, will try again",
        {{"db", m_options.db_path}, {"replica", target.name()}, {"error", e.what()}});
    return;
  }
  if (result.skipped) {
    log(LogLevel::warn, "not pruning: the replica's newest TXID is not one this replicator shipped",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"newest", format::txid_hex(result.newest)},
         {"shipped", format::txid_hex(shipped_now)}});
    return;
  }
  if (result.deleted == 0) return;
  if (log_enabled(LogLevel::info)) {
    log(LogLevel::info, "pruned",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"points_kept", result.plan.points.keep.size()},
         {"objects_deleted", result.deleted},
         {"bytes_deleted", result.plan.remove_bytes}});
  }
  // Compaction must not try to merge what was just deleted; the headers of
  // objects gone (some deleted by others, such as walship prune) go too.
  target.headers.forget(deleted);
  const uint64_t mark = target.headers.mark();  // what the steps add meanwhile stays
  const ReplicaListing after = list_replica(*target.storage);
  target.compactor.load(after, target.headers);
  std::set<std::string> listed;
  for (const SnapshotEntry& snapshot : after.snapshots) listed.insert(snapshot.key);
  for (const DeltaEntry& delta : after.deltas) listed.insert(delta.key);
  target.headers.retain(listed, mark);
}

void Replicator::finish() {
  // Never started (created just before the app exited, or its start failed):
  // what is committed ships all the same.
  const WalForAStep wal(m_wal_fd);
  m_covered_change.reset();
  const bool ack = m_ack_requested.exchange(false);
  if (!m_started) start();
  const std::optional<wal::WalIndexHeader> index_at_start =
      m_shm_fd ? wal::read_wal_index_header(m_shm_fd.get(), m_shm_path) : std::nullopt;
  if (!files_replaced()) {
    ship_all();
    if (ack) m_covered_change = covered(index_at_start);
  }
  // Released whether or not the last ship succeeded: this writer writes
  // nothing more (a compaction under way stops first), so the next one
  // starts at once and without a fence.
  for (auto& target : m_targets) target->maintenance.stop();
  for (auto& target : m_targets) target->lease.release();
}

}  // namespace walship
