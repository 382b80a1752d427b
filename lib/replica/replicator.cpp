#include "lib/replica/replicator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/compaction.h"
#include "lib/replica/db_file.h"
#include "lib/replica/follower.h"
#include "lib/replica/prune.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/snapshot.h"
#include "lib/util/endian.h"
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
// The first retention run comes this long after the start (or one interval,
// if shorter), not a whole interval: a writer restarted more often than the
// interval (spot nodes, deploys) would otherwise never prune. Not at once:
// a rescheduled node's first minute belongs to the app catching up.
constexpr int64_t k_first_retention_ms = 60'000;

uint64_t inode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

// The whole-database checksum after an object: the post_sum of its trailer,
// read with one small range GET.
uint64_t fetch_post_checksum(Storage& storage, const std::string& key, uint64_t size) {
  MemorySink sink;
  if (size < format::k_header_size + format::k_trailer_size ||
      !storage.get(key, sink, ByteRange{size - format::k_trailer_size, format::k_trailer_size}) ||
      sink.data().size() != format::k_trailer_size ||
      std::memcmp(sink.data().data() + 16, "WALSHIPE", 8) != 0) {
    throw Failure("corrupt replica file '" + storage.url() + "/" + key +
                  "': no valid trailer; run walship verify on the replica");
  }
  return get_be64(sink.data().data());
}

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

int64_t ms_between(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
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
  ReplicaTarget(std::unique_ptr<Storage> s, const std::string& state_dir)
      : storage(std::move(s)), store(state_dir, storage->url()) {}

  std::unique_ptr<Storage> storage;
  LocalStateStore store;
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
  Compactor compactor;
  int64_t next_retention_ms = 0;  // 0: k_first_retention_ms after the first step
  size_t slot = 0;                // its index in ReplicateStatus::replicas

  std::string name() const { return storage->url(); }
};

Replicator::Replicator(ReplicatorOptions options, std::vector<std::unique_ptr<Storage>> replicas,
                       ReplicateMonitor* monitor)
    : m_options(std::move(options)), m_monitor(monitor) {
  m_wal_path = m_options.db_path + "-wal";
  m_shm_path = m_options.db_path + "-shm";
  m_state_dir = m_options.db_path + "-walship";
  for (auto& storage : replicas) {
    m_targets.push_back(std::make_unique<ReplicaTarget>(std::move(storage), m_state_dir));
    m_targets.back()->slot = m_targets.size() - 1;
    report([&](ReplicateStatus& s) { s.replicas.push_back({m_targets.back()->name(), 0}); });
  }
}

void Replicator::report_txid(const ReplicaTarget& target) {
  report([&](ReplicateStatus& s) { s.replicas[target.slot].txid = target.state ? target.state->txid : 0; });
}

Replicator::~Replicator() { close_database(); }

void Replicator::open_database() {
  check_db_file(m_options.db_path);
  if (followed_by_serve_replica(m_state_dir)) {
    throw UsageError("database '" + m_options.db_path +
                     "' is followed by walship serve-replica, its only writer: stop serve-replica before "
                     "replicating it (for instance to promote it to the writer after a failover)");
  }
  m_reader = std::make_unique<sqlite::Database>(m_options.db_path, SQLITE_OPEN_READWRITE);
  limit_memory(*m_reader);
  m_reader->set_busy_timeout(k_read_busy_timeout_ms);
  // Closing the last connection would checkpoint and delete the WAL, so a
  // restart could not resume from its position: leave that to the app.
  sqlite3_db_config(m_reader->handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
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
  if (::mkdir(m_state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Failure("unable to create the state directory '" + m_state_dir + "': " + std::strerror(errno));
  }
  m_spool = anonymous_file(m_state_dir);
}

// The second connection, for the writer lock and checkpoints. Opened only
// while needed: an idle database then holds one connection, not two.
sqlite::Database& Replicator::writer() {
  if (!m_writer) {
    m_writer = std::make_unique<sqlite::Database>(m_options.db_path, SQLITE_OPEN_READWRITE);
    limit_memory(*m_writer);
    sqlite3_db_config(m_writer->handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    // Retries every millisecond: SQLite's default backoff (up to 100 ms
    // between tries) almost never finds an app that commits in a tight loop
    // between two transactions.
    sqlite3_busy_handler(
        m_writer->handle(),
        [](void*, int tries) {
          if (tries >= k_writer_busy_tries) return 0;
          ::usleep(1000);
          return 1;
        },
        nullptr);
  }
  return *m_writer;
}

void Replicator::close_database() {
  m_reader.reset();
  m_writer.reset();
  m_wal_fd.reset();
  m_shm_fd.reset();
}

bool Replicator::files_replaced() {
  if (inode_of(m_options.db_path) != m_db_inode) return true;
  if (!m_wal_fd) {
    m_wal_fd.reset(::open(m_wal_path.c_str(), O_RDONLY | O_CLOEXEC));
    m_wal_inode = m_wal_fd ? inode_of(m_wal_path) : 0;
    return false;
  }
  // SQLite never replaces or deletes the WAL while a connection (ours) is open.
  return inode_of(m_wal_path) != m_wal_inode;
}

void Replicator::reconcile(ReplicaTarget& target) {
  const ReplicaListing listing = list_replica(*target.storage);
  target.lost = true;
  target.state.reset();
  target.replica_empty = listing.empty();
  if (target.replica_empty) return;
  HeaderCache headers(*target.storage);
  target.replica_newest = newest_txid(listing, headers);
  // The newest object: a snapshot at that TXID, or a delta ending there.
  // Searched from the newest end: an L0 delta's end is in its header, and a
  // replica holds thousands of them (an hour of 1 s syncs), so a search from
  // the oldest would GET each header on every start of a rescheduled node.
  std::optional<std::pair<std::string, uint64_t>> newest;
  for (const SnapshotEntry& s : listing.snapshots) {
    if (s.txid == target.replica_newest) newest = {s.key, s.size};
  }
  for (auto d = listing.deltas.rbegin(); !newest && d != listing.deltas.rend(); ++d) {
    if (headers.max_txid(*d) == target.replica_newest) newest = {d->key, d->size};
  }
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
  if (local && local->txid == target.replica_newest && local->checksum == target.replica_post &&
      local->page_size == m_page_size) {
    target.state = std::move(local);
    // Resumable when the WAL still holds the shipped position: same salts,
    // and the frame that ends there is the one shipped. Checked in pin().
    target.lost = false;
    target.verify_position = true;
  }
}

std::optional<wal::WalPosition> Replicator::wal_end() {
  if (!m_wal_fd) return std::nullopt;
  const std::optional<wal::WalHeader> header = wal::read_wal_header(m_wal_fd.get(), m_wal_path);
  if (!header) return std::nullopt;
  const std::optional<wal::WalIndexHeader> index = wal::read_wal_index_header(m_shm_fd.get(), m_shm_path);
  if (!index || !wal::wal_index_matches(*index, *header)) return wal::WalPosition::start_of(*header);
  return wal::scan_wal(m_wal_fd.get(), m_wal_path, *header, wal::WalPosition::start_of(*header),
                       index->max_frame)
      .end;
}

namespace {

// Checks that the WAL still holds `position`: the same generation, and the
// frame ending at it carries the checksum recorded when it was shipped.
bool wal_holds(int fd, const std::string& path, const wal::WalPosition& position) {
  if (position.offset == 0) return false;
  const std::optional<wal::WalHeader> header = wal::read_wal_header(fd, path);
  if (!header || !position.same_generation(*header)) return false;
  if (position.offset == wal::k_wal_header_size) return header->checksum == position.checksum;
  const uint64_t frame_size = wal::k_frame_header_size + position.page_size;
  std::array<std::byte, wal::k_frame_header_size> bytes{};
  if (position.offset < wal::k_wal_header_size + frame_size ||
      pread_full(fd, bytes, position.offset - frame_size, path) != bytes.size()) {
    return false;
  }
  const wal::FrameHeader frame = wal::parse_frame_header(bytes);
  return frame.salt1 == position.salt1 && frame.salt2 == position.salt2 && frame.commit_db_pages != 0 &&
         frame.checksum == position.checksum;
}

}  // namespace

// Records in m_pin where the read transaction m_reader holds sees the WAL
// end. The snapshot header has the wal-index header's layout.
void Replicator::record_pin() {
  wal::WalPosition pin;
  pin.page_size = m_page_size;
  pin.offset = wal::k_wal_header_size;
  sqlite3_snapshot* snapshot = nullptr;
  const int rc = sqlite3_snapshot_get(m_reader->handle(), "main", &snapshot);
  if (rc == SQLITE_OK) {
    std::array<std::byte, 48> bytes{};
    std::memcpy(bytes.data(), snapshot, bytes.size());
    sqlite3_snapshot_free(snapshot);
    uint32_t max_frame = 0;
    std::memcpy(&max_frame, bytes.data() + 16, 4);
    pin.salt1 = get_be32(bytes.data() + 32);
    pin.salt2 = get_be32(bytes.data() + 36);
    pin.offset += uint64_t{max_frame} * (wal::k_frame_header_size + m_page_size);
    std::memcpy(&pin.checksum.s0, bytes.data() + 24, 4);
    std::memcpy(&pin.checksum.s1, bytes.data() + 28, 4);
  } else if (rc == SQLITE_ERROR) {
    // SQLite gives no snapshot of a WAL no transaction was written to yet:
    // the read sees no frames. Its generation is the index's now (a later
    // restart makes replicas rehash rather than guess).
    if (const auto index = wal::read_wal_index_header(m_shm_fd.get(), m_shm_path)) {
      pin.salt1 = get_be32(index->salt.data());
      pin.salt2 = get_be32(index->salt.data() + 4);
    }
  } else {
    m_reader->fail("unable to read the WAL position of the read transaction", rc);
  }
  const uint64_t max_frame = pin.frame_index();
  if (m_wal_fd) {
    if (const auto header = wal::read_wal_header(m_wal_fd.get(), m_wal_path);
        header && pin.same_generation(*header)) {
      pin.checkpoint_seq = header->checkpoint_seq;
      if (max_frame == 0) pin.checksum = header->checksum;
    }
  }
  m_pin = pin;
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
  const wal::WalPosition old_pin = m_pin;
  record_pin();
  try {
    ship_all(m_pin.frame_index());
  } catch (...) {
    // Keep the old read: it still holds the frames not shipped yet.
    m_reader->exec("COMMIT");
    std::swap(m_reader, m_writer);
    m_writer.reset();
    m_pin = old_pin;
    throw;
  }
  m_reader->set_busy_timeout(k_read_busy_timeout_ms);
  m_writer.reset();  // ends the old read; the next writer() opens afresh
  return m_pin;
}

void Replicator::start() {
  if (!m_reader) {
    try {
      open_database();
    } catch (...) {
      close_database();  // half open: the next try starts over
      throw;
    }
  }
  for (auto& target : m_targets) reconcile(*target);
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
  sqlite::Database probe(m_options.db_path, SQLITE_OPEN_READWRITE);
  limit_memory(probe);
  sqlite3_db_config(probe.handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  probe.set_busy_timeout(k_truncate_busy_timeout_ms);
  try {
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
  file.commit_time_ms = static_cast<uint64_t>(now_ms());
  file.pre_checksum = state.checksum;
  return file;
}

// Empties the spool file deltas are written to before upload.
FdSink Replicator::reset_spool() {
  if (::ftruncate(m_spool.get(), 0) != 0 || ::lseek(m_spool.get(), 0, SEEK_SET) != 0) {
    throw Failure("unable to reset the spool file in '" + m_state_dir + "': " + std::strerror(errno));
  }
  return FdSink(m_spool.get(), "delta spool in '" + m_state_dir + "'");
}

void Replicator::ship_new_frames(ReplicaTarget& target, uint64_t frame_cap) {
  if (target.lost) return;
  if (!m_wal_fd && target.verify_position) {
    target.lost = true;  // the WAL that held the saved position is gone
    return;
  }
  if (!m_wal_fd) return;
  ShippedState& state = *target.state;
  if (target.verify_position) {
    // A position from the local state: the WAL must still hold it.
    target.verify_position = false;
    if (!wal_holds(m_wal_fd.get(), m_wal_path, state.wal)) {
      log(LogLevel::info, "the WAL moved on while walship was not running; rehashing the database",
          {{"db", m_options.db_path}, {"replica", target.name()}});
      target.lost = true;
      return;
    }
  }
  const std::optional<wal::WalHeader> header = wal::read_wal_header(m_wal_fd.get(), m_wal_path);
  if (!header) return;  // no frames since the WAL was truncated, or none yet
  if (header->page_size != state.page_size) {
    target.lost = true;
    return;
  }
  if (!state.wal.same_generation(*header)) {
    // SQLite restarted the WAL. Only the frames the held read transaction
    // saw can have been dropped; a replica that had shipped them all goes on
    // in the new generation, any other lost some.
    const bool at_pin = state.wal.salt1 == m_pin.salt1 && state.wal.salt2 == m_pin.salt2 &&
                        state.wal.frame_index() >= m_pin.frame_index();
    if (!at_pin) {
      log(LogLevel::warn, "the WAL was restarted before walship read all of it; rehashing the database",
          {{"db", m_options.db_path}, {"replica", target.name()}});
      target.lost = true;
      return;
    }
    state.wal = wal::WalPosition::start_of(*header);
  }
  const std::optional<wal::WalIndexHeader> index = read_index();
  if (!index || !wal::wal_index_matches(*index, *header)) return;  // a restart is under way; next time
  const uint64_t max_frame = std::min<uint64_t>(index->max_frame, frame_cap);
  if (max_frame <= state.wal.frame_index()) return;
  const wal::CommittedFrames frames =
      wal::scan_wal(m_wal_fd.get(), m_wal_path, *header, state.wal, max_frame);
  if (frames.end.frame_index() != max_frame) {
    // Frames SQLite counts as committed do not chain on: the WAL was
    // restarted over them while being read.
    log(LogLevel::warn, "the WAL changed while walship read it; rehashing the database",
        {{"db", m_options.db_path}, {"replica", target.name()}});
    target.lost = true;
    return;
  }

  const uint32_t page_size = state.page_size;
  const uint32_t lock_page = format::lock_page(page_size);
  const format::FileHeader file = next_delta_header(state, frames.db_pages);
  FdSink sink = reset_spool();
  format::ReplicaWriter writer(sink, file, m_options.delta_zstd_level);
  std::vector<std::byte> page(page_size);
  std::vector<std::pair<uint32_t, uint64_t>> changes;
  uint64_t checksum = state.checksum;
  uint64_t new_pages_written = 0;
  for (const auto& [pgno, offset] : frames.pages) {
    if (pgno > frames.db_pages || pgno == lock_page) continue;
    if (pread_full(m_wal_fd.get(), page, offset, m_wal_path) != page.size()) {
      throw Failure("WAL '" + m_wal_path + "' ended inside a committed frame");
    }
    const uint64_t hash = format::page_hash(pgno, page);
    if (pgno <= state.db_pages) {
      checksum ^= state.page_hashes[pgno - 1];
    } else {
      ++new_pages_written;
    }
    checksum ^= hash;
    writer.add_page(pgno, page);
    changes.emplace_back(pgno, hash);
  }
  if (frames.db_pages > state.db_pages) {
    uint64_t new_pages = frames.db_pages - state.db_pages;
    if (lock_page > state.db_pages && lock_page <= frames.db_pages) --new_pages;
    if (new_pages_written != new_pages) {
      // The database grew by pages no frame holds: not something SQLite
      // does; rehash rather than ship a delta that would restore zeros.
      log(LogLevel::warn, "the WAL grew the database without writing the new pages; rehashing",
          {{"db", m_options.db_path}, {"replica", target.name()}});
      target.lost = true;
      return;
    }
  }
  for (uint32_t pgno = frames.db_pages + 1; pgno <= state.db_pages; ++pgno)
    checksum ^= state.page_hashes[pgno - 1];
  writer.finish(checksum);

  const std::string key = format::l0_delta_key(file.min_txid);
  if (!upload(target, key, writer.bytes_written())) return;

  std::vector<uint32_t> changed;
  changed.reserve(changes.size());
  state.page_hashes.resize(frames.db_pages, 0);
  for (const auto& [pgno, hash] : changes) {
    state.page_hashes[pgno - 1] = hash;
    changed.push_back(pgno);
  }
  state.txid = file.max_txid;
  state.checksum = checksum;
  state.db_pages = frames.db_pages;
  state.wal = frames.end;
  target.store.save(state, changed, false);
  target.compactor.add(DeltaRecord{key, 0, file.min_txid, file.max_txid, file.commit_time_ms});
  m_shipped_pages += changes.size();
  report([&](ReplicateStatus& s) {
    ++s.shipped_deltas;
    s.shipped_transactions += frames.commits;
    s.shipped_pages += changes.size();
    s.replicas[target.slot].txid = state.txid;
  });
  if (log_enabled(LogLevel::debug)) {
    log(LogLevel::debug, "shipped",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"txid", format::txid_hex(state.txid)},
         {"commits", std::to_string(frames.commits)},
         {"pages", std::to_string(changes.size())},
         {"bytes", std::to_string(writer.bytes_written())}});
  }
}

bool Replicator::upload(ReplicaTarget& target, const std::string& key, uint64_t size) {
  FdSource source(m_spool.get(), size, "spool in '" + m_state_dir + "'");
  if (target.storage->put_if_absent(key, source)) return true;
  log(LogLevel::error,
      "another process wrote the next TXID of this replica: is a second replicate running on it? "
      "walship will check the replica again and write a new snapshot",
      {{"db", m_options.db_path}, {"replica", target.name()}, {"key", key}});
  reconcile(target);
  return false;
}

void Replicator::resync(ReplicaTarget& target, const wal::WalPosition& pinned) {
  if (!target.state) {
    if (target.replica_empty) {
      write_snapshot(target, 1, pinned, false);
      return;
    }
    std::vector<uint64_t> hashes = hash_database(*m_reader, m_page_size);
    const uint64_t checksum = xor_all(hashes);
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
    target.state = std::move(state);
    target.store.save(*target.state, {}, true);
    target.lost = false;
    report_txid(target);
    return;
  }
  report([](ReplicateStatus& s) { ++s.lost_continuity; });
  ShippedState& state = *target.state;
  if (state.page_size != m_page_size) {
    write_snapshot(target, state.txid + 1, pinned, false);
    return;
  }
  // Ship exactly the pages that differ from the shipped state.
  const std::vector<uint64_t> hashes = hash_database(*m_reader, m_page_size);
  const auto db_pages = static_cast<uint32_t>(hashes.size());
  std::vector<uint32_t> changed;
  uint64_t checksum = state.checksum;
  for (uint32_t pgno = 1; pgno <= db_pages; ++pgno) {
    const uint64_t old = pgno <= state.db_pages ? state.page_hashes[pgno - 1] : 0;
    if (old != hashes[pgno - 1]) {
      changed.push_back(pgno);
      checksum ^= old ^ hashes[pgno - 1];
    }
  }
  for (uint32_t pgno = db_pages + 1; pgno <= state.db_pages; ++pgno) checksum ^= state.page_hashes[pgno - 1];
  if (!changed.empty() || db_pages != state.db_pages) {
    const format::FileHeader file = next_delta_header(state, db_pages);
    FdSink sink = reset_spool();
    format::ReplicaWriter writer(sink, file, m_options.delta_zstd_level);
    sqlite::Statement read(*m_reader, "SELECT data FROM sqlite_dbpage('main') WHERE pgno = ?1");
    for (uint32_t pgno : changed) {
      read.reset();
      read.bind_int64(1, pgno);
      if (!read.step())
        throw Failure("database '" + m_options.db_path + "' has no page " + std::to_string(pgno));
      writer.add_page(pgno, read.column_blob(0));
    }
    writer.finish(checksum);
    const std::string key = format::l0_delta_key(file.min_txid);
    if (!upload(target, key, writer.bytes_written())) return;
    target.compactor.add(DeltaRecord{key, 0, file.min_txid, file.max_txid, file.commit_time_ms});
    state.txid = file.max_txid;
    report([&](ReplicateStatus& s) {
      ++s.shipped_deltas;
      s.shipped_pages += changed.size();
      s.replicas[target.slot].txid = state.txid;
    });
    log(LogLevel::info, "shipped the pages that changed while continuity was lost",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"txid", format::txid_hex(state.txid)},
         {"pages", std::to_string(changed.size())}});
  }
  state.checksum = checksum;
  state.db_pages = db_pages;
  state.page_hashes = hashes;
  state.wal = pinned;
  target.store.save(state, {}, true);
  target.lost = false;
}

void Replicator::write_snapshot(ReplicaTarget& target, uint64_t txid, const wal::WalPosition& pinned,
                                bool check) {
  std::vector<uint64_t> hashes;
  SpooledSnapshot spool =
      spool_snapshot(*m_reader, txid, m_options.snapshot_zstd_level, false, m_state_dir, &hashes);
  if (check && spool.checksum != target.state->checksum) {
    log(LogLevel::error,
        "the database does not match the state walship shipped (was it changed without SQLite?); writing "
        "a snapshot as a new TXID",
        {{"db", m_options.db_path}, {"replica", target.name()}});
    write_snapshot(target, txid + 1, pinned, false);
    return;
  }
  const std::string key = format::snapshot_key(txid);
  FdSource source(spool.fd.get(), spool.size, "snapshot spool for '" + m_options.db_path + "'");
  if (!target.storage->put_if_absent(key, source)) {
    if (check) return;  // this state's snapshot is already there
    throw Failure("snapshot " + key + " of replica '" + target.name() +
                  "' appeared while walship was writing it: is a second replicate running on it? stop it and "
                  "run again");
  }
  ShippedState state;
  state.page_size = spool.header.page_size;
  state.txid = txid;
  state.checksum = spool.checksum;
  state.db_pages = spool.header.db_pages;
  state.page_hashes = std::move(hashes);
  state.wal = pinned;
  target.state = std::move(state);
  target.store.save(*target.state, {}, true);
  target.lost = false;
  target.replica_empty = false;
  target.last_snapshot_ms = static_cast<int64_t>(spool.header.commit_time_ms);
  report([&](ReplicateStatus& s) {
    ++s.snapshots;
    s.replicas[target.slot].txid = txid;
  });
  if (log_enabled(LogLevel::info)) {
    log(LogLevel::info, "snapshot written",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"txid", format::txid_hex(txid)},
         {"pages", std::to_string(spool.header.db_pages)},
         {"bytes", std::to_string(spool.size)}});
  }
}

void Replicator::ship_all(uint64_t frame_cap) {
  std::string first_error;
  bool transient = true;
  for (auto& target : m_targets) {
    if (target->lost) continue;
    try {
      ship_new_frames(*target, frame_cap);
    } catch (const StorageError& e) {
      if (first_error.empty()) first_error = e.what();
    } catch (const Error& e) {
      if (first_error.empty()) first_error = e.what();
      transient = false;
    }
  }
  if (!first_error.empty()) {
    if (transient) throw StorageError(first_error, true);
    throw Failure(first_error);
  }
}

void Replicator::checkpoint_if_due(int64_t now) {
  const std::optional<wal::WalIndexHeader> index = wal::read_wal_index_header(m_shm_fd.get(), m_shm_path);
  if (!index || index->max_frame < m_options.checkpoint_pages) return;
  uint32_t backfilled = 0;
  std::array<std::byte, 4> bytes{};
  // nBackfill: the first field of the checkpoint info after the two headers.
  if (pread_full(m_shm_fd.get(), bytes, 96, m_shm_path) == bytes.size())
    std::memcpy(&backfilled, bytes.data(), 4);
  if (backfilled >= index->max_frame) return;
  const bool restart_due =
      now >= m_last_restart_ms + k_restart_interval_ms || index->max_frame >= m_options.truncate_pages / 4;

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

  // The writer lock keeps the app from committing between the last ship and
  // the new read; an app that holds the lock all the time just postpones this.
  const auto wait_start = std::chrono::steady_clock::now();
  const int lock_rc = sqlite3_exec(writer().handle(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  if (lock_rc == SQLITE_BUSY) {
    log(LogLevel::debug, "checkpoint postponed: the app holds the writer lock", {{"db", m_options.db_path}});
    m_writer.reset();
    return;
  }
  if (lock_rc != SQLITE_OK) m_writer->fail("unable to take the writer lock", lock_rc);
  const auto lock_start = std::chrono::steady_clock::now();
  const int64_t waited_ms = ms_between(wait_start, lock_start);
  try {
    ship_all();
    m_reader->exec("COMMIT");
    const int rc = passive_checkpoint(*m_reader, k_locked_checkpoint_lock_tries, wal_frames, checkpointed);
    pin_read_locked();
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) m_reader->fail("unable to checkpoint", rc);
  } catch (...) {
    m_writer->exec("ROLLBACK");
    m_writer.reset();
    throw;
  }
  m_writer->exec("ROLLBACK");
  m_writer.reset();
  const int64_t held_ms = ms_between(lock_start, std::chrono::steady_clock::now());
  if (wal_frames < 0) {
    // Locked out: the app's own checkpoint (a RESTART waiting for walship's
    // read, say) holds the checkpoint lock. Try again next step; giving up
    // on the WAL here would cost every replica a rehash.
    log(LogLevel::debug, "checkpoint postponed: another checkpoint holds the lock",
        {{"db", m_options.db_path}});
    return;
  }
  report([](ReplicateStatus& s) { ++s.checkpoints_passive; });
  if (log_enabled(LogLevel::debug)) {
    log(LogLevel::debug, "checkpoint",
        {{"db", m_options.db_path},
         {"mode", "passive"},
         {"wal_frames", std::to_string(wal_frames)},
         {"checkpointed", std::to_string(checkpointed)},
         {"writer_lock_wait_ms", std::to_string(waited_ms)},
         {"writer_lock_ms", std::to_string(held_ms)}});
  }
  if (wal_frames >= 0 && checkpointed >= wal_frames) {
    // Everything is checkpointed, so the new read got read mark 0, which
    // keeps the app's own checkpoints from copying anything; SQLite sorts
    // every new frame for each of them (one per commit past its threshold)
    // before finding out. Once the app's next write restarts the WAL, step()
    // reads again, with a mark above 0.
    m_read_mark_zero = true;
    return;
  }
  if (static_cast<uint32_t>(wal_frames) < m_options.truncate_pages) return;

  // Readers of the app keep the WAL from being checkpointed to the end and it
  // is past the hard limit: TRUNCATE waits for them (at most the busy
  // timeout). The app may commit between releasing the writer lock and the
  // checkpoint taking it, so every replica rehashes afterwards.
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
      {{"db", m_options.db_path}, {"wal_frames", std::to_string(wal_frames)}});
  for (auto& target : m_targets) target->lost = true;
}

void Replicator::scheduled_snapshot(ReplicaTarget& target, int64_t now) {
  if (m_options.snapshot_interval_ms <= 0 || target.lost || !target.state) return;
  if (now < target.last_snapshot_ms + m_options.snapshot_interval_ms) return;
  const wal::WalPosition pinned = pin();
  // The snapshot is of the pinned state: the replica ships exactly up to it.
  ship_new_frames(target, pinned.frame_index());
  if (target.lost || !target.state || target.state->wal.frame_index() != pinned.frame_index() ||
      !target.state->wal.same_generation(
          wal::WalHeader{false, m_page_size, 0, pinned.salt1, pinned.salt2, {}})) {
    return;  // not at the pin after all (a restart slipped in); next time
  }
  write_snapshot(target, target.state->txid, pinned, true);
  target.last_snapshot_ms = now;
}

std::optional<int64_t> Replicator::step(int64_t now) {
  if (!m_started) start();
  // Every commit SQLite counted by now is shipped once this step succeeds.
  const std::optional<wal::WalIndexHeader> index_at_start =
      m_shm_fd ? wal::read_wal_index_header(m_shm_fd.get(), m_shm_path) : std::nullopt;
  if (files_replaced()) {
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
  checkpoint_if_due(now);
  std::optional<int64_t> next;
  auto sooner = [&](int64_t t) { next = next ? std::min(*next, t) : t; };
  if (m_read_mark_zero) sooner(static_cast<int64_t>(now_ms()) + k_repin_ms);
  // Pages are not read again soon: hand the page cache back.
  sqlite3_db_release_memory(m_reader->handle());
  for (auto& target : m_targets) {
    scheduled_snapshot(*target, now);
    if (m_options.snapshot_interval_ms > 0) sooner(target->last_snapshot_ms + m_options.snapshot_interval_ms);
    const uint64_t compacted = target->compactor.written();
    if (auto due = target->compactor.run(*target->storage, m_options, now, m_state_dir)) sooner(*due);
    if (target->compactor.written() != compacted) {
      report([&](ReplicateStatus& s) { s.compactions += target->compactor.written() - compacted; });
    }
    if (auto due = retention(*target, now)) sooner(*due);
  }
  report([&](ReplicateStatus& s) {
    s.change_known = index_at_start.has_value();
    if (index_at_start) s.shipped_change = index_at_start->change;
  });
  return next;
}

// Prunes the replica with the configured policy once per interval, after
// compaction (whose fresh files let older ones go). Only the replicator that
// holds the replica's tip prunes: it knows no other writer is extending the
// chain it is about to thin.
std::optional<int64_t> Replicator::retention(ReplicaTarget& target, int64_t now) {
  if (!m_options.retention_enabled || m_options.retention.empty()) return std::nullopt;
  if (target.next_retention_ms == 0)
    target.next_retention_ms = now + std::min(k_first_retention_ms, m_options.retention_interval_ms);
  if (now < target.next_retention_ms) return target.next_retention_ms;
  if (target.lost || !target.state) return now + m_options.retention_interval_ms;
  target.next_retention_ms = now + m_options.retention_interval_ms;
  const ReplicaListing listing = list_replica(*target.storage);
  HeaderCache headers(*target.storage);
  std::vector<std::string> keys;
  for (const SnapshotEntry& s : listing.snapshots) keys.push_back(s.key);
  for (const DeltaEntry& d : listing.deltas) keys.push_back(d.key);
  headers.prefetch(keys, 8);
  const uint64_t newest = newest_txid(listing, headers);
  if (newest != target.state->txid) {
    log(LogLevel::warn, "not pruning: the replica's newest TXID is not the one this replicator shipped",
        {{"db", m_options.db_path},
         {"replica", target.name()},
         {"newest", format::txid_hex(newest)},
         {"shipped", format::txid_hex(target.state->txid)}});
    return target.next_retention_ms;
  }
  try {
    const PrunePlan plan = plan_prune(listing, headers, m_options.retention, target.name());
    for (const PruneObject& o : plan.remove) {
      target.storage->remove({o.key});
      report([](ReplicateStatus& s) { ++s.pruned_objects; });
    }
    if (!plan.remove.empty() && log_enabled(LogLevel::info)) {
      log(LogLevel::info, "pruned",
          {{"db", m_options.db_path},
           {"replica", target.name()},
           {"points_kept", std::to_string(plan.points.keep.size())},
           {"objects_deleted", std::to_string(plan.remove.size())},
           {"bytes_deleted", std::to_string(plan.remove_bytes)}});
    }
    if (plan.remove.empty()) return target.next_retention_ms;
  } catch (const StorageError&) {
    throw;
  } catch (const Error& e) {
    log(LogLevel::error, "unable to apply retention; nothing deleted, will try again",
        {{"db", m_options.db_path}, {"replica", target.name()}, {"error", e.what()}});
    return target.next_retention_ms;
  }
  // Compaction must not try to merge what was just deleted.
  const ReplicaListing after = list_replica(*target.storage);
  HeaderCache after_headers(*target.storage);
  target.compactor.load(after, after_headers);
  return target.next_retention_ms;
}

void Replicator::finish() {
  // Never started (created just before the app exited, or its start failed):
  // what is committed ships all the same.
  if (!m_started) start();
  if (files_replaced()) return;
  ship_all();
}

}  // namespace walship
