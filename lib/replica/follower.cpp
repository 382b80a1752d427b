#include "lib/replica/follower.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/counting_storage.h"
#include "lib/replica/lease.h"
#include "lib/replica/local_state.h"
#include "lib/replica/object_stream.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/restore.h"
#include "lib/replica/restore_plan.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/signals.h"
#include "lib/util/state_file.h"
#include "lib/util/time.h"

namespace walship {

namespace {

using format::txid_hex;

// ---------------------------------------------------------------- signals

// A stop (SIGTERM, SIGINT, SIGHUP) comes through lib/util/signals' pipe, so
// it is noticed within one poll and never in the middle of a transaction;
// one while the first restore writes its temp file removes it and ends the
// process instead. A follower inside another command (replicate --config)
// leaves the signals to it and stops once `external_fd` is readable (it is
// never read here, so one byte stops all).
class StopSignals {
 public:
  explicit StopSignals(int external_fd = -1) : m_external_fd(external_fd) {
    if (m_external_fd < 0) m_pipe.emplace(k_stop_signals, TempFilesOnStop::remove_and_die);
  }

  bool stopped() {
    if (m_stopped) return true;
    if (m_external_fd >= 0) {
      pollfd fd{m_external_fd, POLLIN, 0};
      m_stopped = ::poll(&fd, 1, 0) > 0;
      return m_stopped;
    }
    if (const int sig = m_pipe->next(); sig != 0) {
      m_stopped = true;
      log(LogLevel::info, "stopping", {{"signal", strsignal(sig)}});
    }
    return m_stopped;
  }
  // Sleeps up to `ms`; returns true (at once) when a stop signal arrives.
  bool wait(int64_t ms) {
    if (stopped()) return true;
    pollfd fd{m_external_fd >= 0 ? m_external_fd : m_pipe->fd(), POLLIN, 0};
    ::poll(&fd, 1, static_cast<int>(std::max<int64_t>(0, ms)));
    return stopped();
  }

 private:
  int m_external_fd;
  std::optional<SignalPipe> m_pipe;
  bool m_stopped = false;
};

// ---------------------------------------------------------------- local state

// "PATH-walship/follow": the TXID and whole-database checksum PATH is at. A
// cache: a missing or untrusted state costs one rehash of PATH. `pending_*`
// is written before each COMMIT and cleared after it, so a kill between the
// two leaves PATH at one of two known states, told apart by a rehash.
struct FollowState {
  std::string replica;
  uint64_t txid = 0;
  uint64_t checksum = 0;
  uint64_t commit_ms = 0;
  uint32_t db_pages = 0;
  uint32_t page_size = 0;
  uint64_t pending_txid = 0;  // 0: none
  uint64_t pending_checksum = 0;
  uint64_t pending_commit_ms = 0;
  uint32_t pending_db_pages = 0;
};

constexpr std::string_view k_follow_magic = "walship-follow 1";
// A follower stuck on the same error logs it once a minute, not every poll.
constexpr int64_t k_error_log_interval_ms = 60'000;

std::optional<FollowState> load_follow_state(const std::string& path) {
  const std::optional<StateFields> fields = read_state_file(path, k_follow_magic);
  if (!fields) return std::nullopt;
  const auto replica = fields->text("replica");
  const auto txid = fields->hex("txid"), checksum = fields->hex("checksum"),
             commit_ms = fields->dec("commit_ms"), pending_txid = fields->hex("pending_txid"),
             pending_checksum = fields->hex("pending_checksum"),
             pending_commit_ms = fields->dec("pending_commit_ms");
  const auto db_pages = fields->dec32("db_pages"), page_size = fields->dec32("page_size"),
             pending_db_pages = fields->dec32("pending_db_pages");
  if (!replica || !txid || !checksum || !commit_ms || !db_pages || !page_size || !pending_txid ||
      !pending_checksum || !pending_commit_ms || !pending_db_pages) {
    return std::nullopt;
  }
  return FollowState{*replica,   *txid,         *checksum,         *commit_ms,         *db_pages,
                     *page_size, *pending_txid, *pending_checksum, *pending_commit_ms, *pending_db_pages};
}

// Durable like every state file (lib/util/state_file.h).
void save_follow_state(const std::string& path, const FollowState& state) {
  StateFields fields;
  fields.set("replica", state.replica);
  fields.set_hex("txid", state.txid);
  fields.set_hex("checksum", state.checksum);
  fields.set_dec("commit_ms", state.commit_ms);
  fields.set_dec("db_pages", state.db_pages);
  fields.set_dec("page_size", state.page_size);
  fields.set_hex("pending_txid", state.pending_txid);
  fields.set_hex("pending_checksum", state.pending_checksum);
  fields.set_dec("pending_commit_ms", state.pending_commit_ms);
  fields.set_dec("pending_db_pages", state.pending_db_pages);
  write_state_file(path, k_follow_magic, fields, 0644);
}

// ---------------------------------------------------------------- exclusivity

// Takes PATH-walship/serve.lock (flock, released by the kernel when the
// process dies) and refuses PATH when a replicator keeps its state there.
UniqueFd take_follow_lock(const std::string& db_path, const std::string& state_dir) {
  if (::mkdir(state_dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw Failure(errno_message("unable to create '" + state_dir + "'", errno));
  if (DIR* dir = ::opendir(state_dir.c_str())) {
    bool replicated = false;
    while (const dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name.size() > 6 && name.ends_with(".state")) replicated = true;
    }
    ::closedir(dir);
    if (replicated) {
      throw UsageError("'" + db_path + "' is replicated by walship replicate (its state is in '" + state_dir +
                       "'): serve-replica must be the only writer of its database; follow the replica into "
                       "another path");
    }
  }
  const std::string lock_path = state_dir + "/serve.lock";
  UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) throw Failure(errno_message("unable to open '" + lock_path + "'", errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      throw UsageError("'" + db_path + "' is already followed by another walship serve-replica (it holds '" +
                       lock_path + "'): stop it first, or follow into another path");
    }
    throw Failure(errno_message("unable to lock '" + lock_path + "'", errno));
  }
  return fd;
}

// ---------------------------------------------------------------- applying

struct DbState {
  uint64_t txid = 0;
  uint64_t checksum = 0;
  uint64_t commit_ms = 0;
  uint32_t db_pages = 0;
  uint32_t page_size = 0;
};

int on_wal_commit(void* arg, sqlite3*, const char*, int frames) {
  *static_cast<int*>(arg) = frames;
  return SQLITE_OK;
}

// The one writable connection to PATH. Every replica file is applied in one
// write transaction through sqlite_dbpage: pages 2..N, the truncation, and
// page 1 last (it holds the schema cookie: once it changes, any further
// statement of the transaction would re-read the schema through b-tree pages
// this connection cached before they were overwritten underneath it).
class Applier {
 public:
  Applier(const std::string& path, uint32_t checkpoint_pages)
      : m_db(path, SQLITE_OPEN_READWRITE), m_checkpoint_pages(checkpoint_pages) {
    m_db.set_busy_timeout(10'000);
    const std::string mode = m_db.query_text("PRAGMA journal_mode");
    if (mode != "wal") {
      throw UsageError("'" + path + "' is not in WAL mode (journal_mode=" + mode +
                       "): serve-replica follows replicas of WAL databases only");
    }
    // No fsync per commit: after a crash or power loss, start-up rehashes
    // PATH and finds the TXID it is at, even one the local state lost.
    m_db.exec("PRAGMA synchronous=NORMAL");
    // Checkpoints are ours (counted, PASSIVE), not the autocheckpoint's.
    sqlite3_wal_autocheckpoint(m_db.handle(), 0);
    sqlite3_wal_hook(m_db.handle(), on_wal_commit, &m_wal_frames);
    m_read_page = std::make_unique<sqlite::Statement>(m_db, "SELECT data FROM sqlite_dbpage WHERE pgno = ?1");
    m_write_page =
        std::make_unique<sqlite::Statement>(m_db, "INSERT INTO sqlite_dbpage(pgno, data) VALUES(?1, ?2)");
  }

  // The whole-database checksum and size of PATH as it is, in one read transaction.
  DbState rehash() {
    DbState state;
    m_db.exec("BEGIN");
    try {
      state.page_size = static_cast<uint32_t>(m_db.query_int("PRAGMA page_size"));
      state.db_pages = static_cast<uint32_t>(m_db.query_int("PRAGMA page_count"));
      sqlite::Statement all(m_db, "SELECT pgno, data FROM sqlite_dbpage");
      const uint32_t lock_page = format::lock_page(state.page_size);
      format::DbChecksum sum;
      while (all.step()) {
        const auto pgno = static_cast<uint32_t>(all.column_int64(0));
        if (pgno == lock_page) continue;
        sum.add(pgno, all.column_blob(1));
      }
      state.checksum = sum.value();
    } catch (...) {
      m_db.exec("ROLLBACK");
      throw;
    }
    m_db.exec("COMMIT");
    return state;
  }

  // Applies one snapshot or delta onto `state` (checked against the chain
  // rule first for a delta). A `spanning` delta starts at or before
  // state.txid and ends after it: it holds the newest version of every page
  // changed after state.txid, so applied onto `state` it gives its end
  // state, which its post-checksum proves. `before_commit` runs once the new
  // checksum is proven, right before COMMIT. Throws Failure naming `name`;
  // PATH is then unchanged.
  template <typename BeforeCommit>
  DbState apply(format::ReplicaReader& reader, const std::string& name, const DbState& state, bool spanning,
                uint64_t& pages_applied, BeforeCommit&& before_commit) {
    const format::FileHeader& header = reader.header();
    const bool snapshot = header.kind == format::FileKind::snapshot;
    if (header.page_size != state.page_size) {
      throw Failure(
          "replica file '" + name + "' has page size " + std::to_string(header.page_size) + " but '" +
          m_db.path() + "' has " + std::to_string(state.page_size) +
          ": remove the database (and its -wal, -shm and -walship) and start again to re-restore it");
    }
    if (spanning && (snapshot || header.min_txid > state.txid || header.max_txid <= state.txid)) {
      throw Failure("replica file '" + name + "' does not span TXID " + txid_hex(state.txid));
    }
    if (!snapshot && !spanning &&
        (header.min_txid != state.txid + 1 || header.pre_checksum != state.checksum)) {
      throw Failure("replica file '" + name + "' does not chain onto TXID " + txid_hex(state.txid) +
                    " (it starts at " + txid_hex(header.min_txid) + " from checksum " +
                    txid_hex(header.pre_checksum) + ", the database is at " + txid_hex(state.checksum) + ")");
    }
    const uint32_t lock_page = format::lock_page(state.page_size);
    format::DbChecksum sum(snapshot ? 0 : state.checksum);
    std::vector<std::byte> old_page;
    std::vector<std::byte> page_one;
    uint64_t written = 0;
    m_db.exec("BEGIN IMMEDIATE");
    try {
      std::vector<format::PageRef> pages;
      while (reader.next_frame(pages)) {
        for (const format::PageRef& page : pages) {
          if (page.pgno == 1) {
            page_one.assign(page.data.begin(), page.data.end());
            continue;
          }
          if (!snapshot && page.pgno <= state.db_pages) sum.remove(page.pgno, read_page(page.pgno));
          sum.add(page.pgno, page.data);
          write_page(page.pgno, page.data);
          ++written;
        }
      }
      // Pages past the new end: out of the checksum, and out of the file.
      if (header.db_pages < state.db_pages) {
        if (!snapshot) {
          for (uint32_t pgno = header.db_pages + 1; pgno <= state.db_pages; ++pgno) {
            if (pgno != lock_page) sum.remove(pgno, read_page(pgno));
          }
        }
        m_db.exec("INSERT INTO sqlite_dbpage(pgno, data) VALUES(" + std::to_string(header.db_pages) +
                  ", NULL)");
      }
      if (!page_one.empty()) {
        if (!snapshot && state.db_pages >= 1) sum.remove(1, read_page(1));
        sum.add(1, page_one);
        write_page(1, page_one);
        ++written;
      }
      if (sum.value() != reader.trailer().post_checksum) {
        throw Failure("replica file '" + name + "' does not reproduce the database it describes on '" +
                      m_db.path() + "' (checksum " + txid_hex(sum.value()) + ", expected " +
                      txid_hex(reader.trailer().post_checksum) +
                      "): nothing was applied; the replica or the local database is corrupt");
      }
      DbState next;
      next.txid = header.max_txid;
      next.checksum = sum.value();
      next.commit_ms = header.commit_time_ms;
      next.db_pages = header.db_pages;
      next.page_size = state.page_size;
      before_commit(next);
      pause_for_tests();
      m_db.exec("COMMIT");
      reset_cache();
      pages_applied = written;
      return next;
    } catch (...) {
      sqlite3_exec(m_db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
      reset_cache();
      throw;
    }
  }

  // PASSIVE checkpoint when the WAL passed the threshold; true if one ran.
  bool maybe_checkpoint(bool force) {
    if (m_wal_frames == 0 || (!force && static_cast<uint32_t>(m_wal_frames) < m_checkpoint_pages))
      return false;
    int log = 0;
    int done = 0;
    const int rc = sqlite3_wal_checkpoint_v2(m_db.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) m_db.fail("unable to checkpoint", rc);
    // Frames readers still need stay; the next commit's hook recounts.
    m_wal_frames = done == log ? 0 : log;
    return true;
  }

 private:
  std::span<const std::byte> read_page(uint32_t pgno) {
    m_read_page->reset();
    m_read_page->bind_int64(1, pgno);
    if (!m_read_page->step())
      throw Failure("page " + std::to_string(pgno) + " of '" + m_db.path() + "' is missing");
    const std::span<const std::byte> data = m_read_page->column_blob(0);
    m_old.assign(data.begin(), data.end());
    m_read_page->reset();
    return m_old;
  }
  void write_page(uint32_t pgno, std::span<const std::byte> data) {
    m_write_page->reset();
    m_write_page->bind_int64(1, pgno);
    m_write_page->bind_blob(2, data);
    m_write_page->step();
    m_write_page->reset();
  }
  // Tests hold every transaction open this long before COMMIT
  // ($WALSHIP_TEST_APPLY_PAUSE_MS), so that a kill -9 lands inside one.
  static void pause_for_tests() {
    static const int64_t pause_ms = [] {
      const char* text = std::getenv("WALSHIP_TEST_APPLY_PAUSE_MS");
      return text ? std::atoll(text) : 0;
    }();
    if (pause_ms > 0) ::usleep(static_cast<useconds_t>(pause_ms * 1000));
  }
  // Pages cached by this connection may describe their overwritten content.
  void reset_cache() { sqlite3_file_control(m_db.handle(), "main", SQLITE_FCNTL_RESET_CACHE, nullptr); }

  sqlite::Database m_db;
  uint32_t m_checkpoint_pages;
  int m_wal_frames = 0;
  std::vector<std::byte> m_old;
  std::unique_ptr<sqlite::Statement> m_read_page;
  std::unique_ptr<sqlite::Statement> m_write_page;
};

// ---------------------------------------------------------------- the loop

class Follower {
 public:
  Follower(const FollowOptions& options, Storage& storage, FollowMonitor& monitor)
      : m_options(options),
        m_storage(storage, monitor.storage_counters()),
        m_monitor(monitor),
        m_state_dir(local_state_dir(options.db_path)),
        m_state_path(m_state_dir + "/follow") {}

  int run() {
    // First: from here on, a stop is one of the two outcomes below, never
    // the signal's default action (test_serve_replica_stop.py).
    StopSignals signals(m_options.stop_fd);
    m_lock = take_follow_lock(m_options.db_path, m_state_dir);
    m_monitor.update([&](FollowStatus& s) {
      s.db_path = m_options.db_path;
      s.replica = m_storage.url();
      s.backend = storage_backend_of(m_storage.url());
    });
    std::optional<DbState> restored;
    if (!path_exists(m_options.db_path)) {
      // A stop while the restore writes its temp file removes it and ends the
      // process; one before or after stops below, with PATH whole (exit 0).
      // Inside another command (stop_fd), a stop waits for the restore.
      try {
        restored = restore();
      } catch (...) {
        // Leave nothing behind for a database that never came to be.
        ::unlink((m_state_dir + "/serve.lock").c_str());
        ::rmdir(m_state_dir.c_str());
        throw;
      }
    }
    m_applier = std::make_unique<Applier>(m_options.db_path, m_options.checkpoint_pages);
    m_state = restored ? *restored : resume();
    save_clean();
    publish();
    log(LogLevel::info, "following",
        {{"db", m_options.db_path}, {"replica", m_storage.url()}, {"txid", txid_hex(m_state.txid)}});

    int64_t next_list_ms = 0;  // LIST at once: catch up through compacted levels
    while (!signals.stopped()) {
      const auto now = static_cast<int64_t>(now_ms());
      try {
        if (now >= next_list_ms || m_list_now) {
          next_list_ms = now + m_options.list_interval_ms;
          catch_up(signals);
          m_list_now = false;
        }
        while (!signals.stopped() && probe_next()) {
        }
        if (m_applier->maybe_checkpoint(false)) m_monitor.update([](FollowStatus& s) { ++s.checkpoints; });
        m_monitor.update([](FollowStatus& s) { s.last_error.clear(); });
      } catch (const StorageError& e) {
        // Transient or not, the replica may answer at the next poll.
        note_error(e.what(), now);
      } catch (const BadObjectError& e) {
        // A file that does not apply: PATH is unchanged. It is left out from
        // now on, and the next poll's LIST looks for a way around it.
        left_out(e);
        note_error(e.what(), now);
        next_list_ms = now;
      } catch (const Failure& e) {
        // No way on from here (a replica with a gap): look again from a LIST
        // every ten polls (a snapshot written meanwhile may re-seed).
        note_error(e.what(), now);
        next_list_ms = std::min(next_list_ms, now + 10 * m_options.poll_interval_ms);
      }
      if (signals.wait(m_options.poll_interval_ms)) break;
    }
    if (m_applier->maybe_checkpoint(true)) m_monitor.update([](FollowStatus& s) { ++s.checkpoints; });
    log(LogLevel::info, "stopped", {{"db", m_options.db_path}, {"txid", txid_hex(m_state.txid)}});
    return 0;
  }

 private:
  // Every failed poll counts (walship_follow_errors_total) and shows on
  // /healthz; the log gets one line per distinct error per minute, saying
  // how many failures it did not log since its last line.
  void note_error(const std::string& message, int64_t now) {
    m_monitor.update([&](FollowStatus& s) {
      s.last_error = message;
      ++s.errors;
    });
    if (message == m_logged_error && now < m_logged_error_ms + k_error_log_interval_ms) {
      ++m_unlogged_errors;
      return;
    }
    log(LogLevel::warn, "follow step failed",
        {{"db", m_options.db_path}, {"error", message}, {"not_logged_since", m_unlogged_errors}});
    m_logged_error = message;
    m_logged_error_ms = now;
    m_unlogged_errors = 0;
  }

  DbState restore() {
    RestoreOptions restore;
    restore.output_path = m_options.db_path;
    restore.parallelism = m_options.parallelism;
    restore.quiet = m_options.quiet;
    // A follower starts from the newest point it can reach, as it always has
    // (restore warns when that is not the replica's newest), then follows.
    restore.target.allow_older = true;
    const ReplicaListing listing = list_replica(m_storage);
    if (listing.empty()) {
      throw Failure("no replica at '" + m_storage.url() +
                    "' (nothing found there): check the URL, or start walship replicate first");
    }
    const RestoreResult result = run_restore(restore, m_storage);
    DbState state;
    state.txid = result.txid;
    state.checksum = result.checksum;
    state.commit_ms = result.commit_time_ms;
    state.db_pages = result.db_pages;
    state.page_size = result.page_size;
    return state;
  }

  // Where an existing PATH is: the local state when it is trustworthy, else
  // a rehash told apart against the states the local state names.
  DbState resume() {
    const std::optional<FollowState> saved = load_follow_state(m_state_path);
    if (saved && saved->replica != m_storage.url()) {
      throw UsageError("'" + m_options.db_path + "' follows another replica ('" + saved->replica +
                       "'): follow '" + m_storage.url() + "' into another path");
    }
    const DbState actual = m_applier->rehash();
    if (saved && saved->checksum == actual.checksum && saved->db_pages == actual.db_pages) {
      return {saved->txid, saved->checksum, saved->commit_ms, saved->db_pages, actual.page_size};
    }
    if (saved && saved->pending_txid != 0 && saved->pending_checksum == actual.checksum) {
      log(LogLevel::info, "the last apply committed before the process stopped",
          {{"db", m_options.db_path}, {"txid", txid_hex(saved->pending_txid)}});
      return {saved->pending_txid, saved->pending_checksum, saved->pending_commit_ms, saved->pending_db_pages,
              actual.page_size};
    }
    // No trusted TXID: find the replica state with this checksum.
    const std::optional<DbState> found = locate(actual);
    if (found) return *found;
    throw UsageError("'" + m_options.db_path + "' is not a state of replica '" + m_storage.url() +
                     "' that walship can find (checksum " + txid_hex(actual.checksum) +
                     "): it was changed by something else; remove it (and its -wal, -shm and -walship) to "
                     "restore it afresh");
  }

  // A TXID of the replica whose whole-database checksum equals `actual`, for
  // a PATH without a trusted local state (made by walship restore, say). A
  // bad object is passed over (and left out from then on).
  std::optional<DbState> locate(const DbState& actual) {
    const ReplicaListing listing = list_replica(m_storage);
    HeaderCache headers(m_storage);
    const std::optional<PointFound> found =
        find_point_by_checksum(m_storage, listing, headers, actual.checksum, m_options.parallelism,
                               [&](const BadObjectError& e) { left_out(e); });
    if (!found) return std::nullopt;
    DbState state = actual;
    state.txid = found->txid;
    state.commit_ms = found->commit_ms;
    return state;
  }

  // PATH's state as the local state file records it, nothing pending.
  FollowState clean_state() const {
    FollowState state;
    state.replica = m_storage.url();
    state.txid = m_state.txid;
    state.checksum = m_state.checksum;
    state.commit_ms = m_state.commit_ms;
    state.db_pages = m_state.db_pages;
    state.page_size = m_state.page_size;
    return state;
  }

  void save_clean() { save_follow_state(m_state_path, clean_state()); }

  void save_pending(const DbState& next) {
    FollowState state = clean_state();
    state.pending_txid = next.txid;
    state.pending_checksum = next.checksum;
    state.pending_commit_ms = next.commit_ms;
    state.pending_db_pages = next.db_pages;
    save_follow_state(m_state_path, state);
  }

  void publish() {
    const uint64_t now = now_ms();
    m_monitor.update([&](FollowStatus& s) {
      s.applied_txid = m_state.txid;
      s.applied_commit_ms = m_state.commit_ms;
      if (s.replica_txid <= m_state.txid) {
        s.replica_txid = m_state.txid;
        s.next_commit_ms = 0;
      }
      s.last_check_ms = now;
    });
  }

  // Downloads a whole object into an anonymous file beside PATH, so memory
  // stays bounded however big a delta is; false when it does not exist.
  std::optional<FdSource> download(const std::string& key, UniqueFd& fd) {
    fd = anonymous_file(m_state_dir);
    const std::string name = m_storage.url() + "/" + key;
    FdSink sink(fd.get(), name);
    if (!m_storage.get(key, sink)) return std::nullopt;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      throw Failure(errno_message("unable to read the download of '" + name + "'", errno));
    return std::make_optional<FdSource>(fd.get(), static_cast<uint64_t>(st.st_size), name);
  }

  // A bad object is never tried again: the follower goes around it.
  void left_out(const BadObjectError& e) {
    if (!m_bad_objects.insert(e.key()).second) return;
    m_monitor.update([](FollowStatus& s) { ++s.apply_errors; });
    log(LogLevel::warn, "skipping a bad replica object: following by another path",
        {{"db", m_options.db_path}, {"object", e.key()}, {"why", e.what()}});
  }

  // Applies one object (a snapshot for a re-seed, or a delta) from `source`.
  // Throws BadObjectError naming it when it does not decode or chain on.
  void apply_object(ByteSource& source, const std::string& key, bool spanning = false) {
    const std::string name = m_storage.url() + "/" + key;
    uint64_t pages = 0;
    bool snapshot = false;
    DbState next;
    try {
      format::ReplicaReader reader(source, name);
      snapshot = reader.header().kind == format::FileKind::snapshot;
      m_monitor.update([&](FollowStatus& s) {
        s.replica_txid = std::max(s.replica_txid, reader.header().max_txid);
        s.next_commit_ms = reader.header().commit_time_ms;
      });
      next = m_applier->apply(reader, name, m_state, spanning, pages,
                              [&](const DbState& proven) { save_pending(proven); });
    } catch (const StorageError&) {
      throw;
    } catch (const BadObjectError&) {
      throw;
    } catch (const sqlite::Error&) {
      throw;  // PATH's, not the object's (a full disk, say): tried again
    } catch (const Failure& e) {
      throw BadObjectError(key, e.what());
    }
    m_state = next;
    save_clean();
    m_monitor.update([&](FollowStatus& s) {
      if (snapshot) {
        ++s.reseeds;
      } else {
        ++s.applied_deltas;
      }
      s.applied_pages += pages;
    });
    publish();
    if (log_enabled(LogLevel::debug) || snapshot) {
      log(snapshot ? LogLevel::info : LogLevel::debug, snapshot ? "re-seeded from a snapshot" : "applied",
          {{"db", m_options.db_path},
           {"object", key},
           {"txid", txid_hex(m_state.txid)},
           {"pages", std::to_string(pages)}});
    }
  }

  // One GET of the next L0 delta; a miss is the cheap, normal answer. A
  // delta found is applied once the lease says its writer still holds the
  // replica: after a takeover it may be the fenced writer's, which only a
  // LIST (with the fence) tells apart.
  bool probe_next() {
    const std::string key = format::l0_delta_key(m_state.txid + 1);
    if (m_bad_objects.contains(key)) return false;  // the LIST goes around it
    UniqueFd fd;
    std::optional<FdSource> source = download(key, fd);
    if (!source) {
      m_monitor.update([&](FollowStatus& s) {
        s.last_check_ms = now_ms();
        if (s.replica_txid <= m_state.txid) s.next_commit_ms = 0;
      });
      return false;
    }
    if (m_lease.holder_changed()) {
      m_list_now = true;
      return false;
    }
    apply_object(*source, key);
    return true;
  }

  // From one LIST: the fewest deltas from the current TXID to the newest,
  // and a re-seed from a newer snapshot when no delta chain reaches it. A
  // bad object met on the way is left out and the way planned again: a
  // compacted file over a bad delta, or a newer snapshot past it.
  void catch_up(StopSignals& signals) {
    const ReplicaListing full = list_replica(m_storage);
    m_lease.listed(full.newest_lease_seq);
    if (m_lease.fence_pending(full.fences, static_cast<int64_t>(now_ms()))) {
      throw Failure(
          "replica '" + m_storage.url() +
          "' was taken over by another writer that has not written its fence yet: following on once "
          "it has (or its lease expires)");
    }
    HeaderCache headers(m_storage);
    for (;;) {
      try {
        // The newest TXID counts a bad object's that was written (its header
        // names its key's TXIDs, its body broke): a follower stopped before
        // it says so, though no good object reaches it.
        const uint64_t newest = claimed_newest_txid(full, m_bad_objects, headers);
        catch_up(exclude_objects(full, m_bad_objects), newest, headers, signals);
        return;
      } catch (const BadObjectError& e) {
        if (m_bad_objects.contains(e.key())) throw;
        left_out(e);
      }
    }
  }

  void catch_up(const ReplicaListing& listing, uint64_t newest, HeaderCache& headers, StopSignals& signals) {
    m_monitor.update([&](FollowStatus& s) {
      s.replica_txid = std::max(s.replica_txid, newest);
      s.last_check_ms = now_ms();
    });
    if (newest <= m_state.txid) return;
    for (;;) {
      apply_chain(chain_deltas(listing, m_state.txid, newest, std::nullopt, headers), signals);
      if (m_state.txid >= newest || signals.stopped()) return;
      // While the follower was away, a prune may have deleted the deltas
      // that chain onto its TXID (or one is bad), keeping compacted files
      // that span it.
      const DeltaEntry* span = spanning_delta(listing, m_state.txid);
      if (!span) break;
      apply_delta(*span, true);
    }
    // The chain ends before the newest TXID: continuity was lost on the
    // writer, which started again from a snapshot (or a delta is bad).
    // Re-seed from the newest snapshot past this point, then follow its
    // deltas.
    const auto snapshot = std::find_if(listing.snapshots.rbegin(), listing.snapshots.rend(),
                                       [&](const SnapshotEntry& s) { return s.txid > m_state.txid; });
    if (snapshot == listing.snapshots.rend()) {
      throw Failure("replica '" + m_storage.url() + "' has TXIDs up to " + txid_hex(newest) + " but no " +
                    (m_bad_objects.empty() ? "" : "good ") + "delta chains onto TXID " +
                    txid_hex(m_state.txid) +
                    " and no later snapshot exists: the replica is incomplete; run walship verify");
    }
    log(LogLevel::info, "no delta chain reaches the replica's newest TXID: re-seeding from a snapshot",
        {{"db", m_options.db_path},
         {"from", txid_hex(m_state.txid)},
         {"snapshot", txid_hex(snapshot->txid)}});
    ObjectStream stream(m_storage, snapshot->key, snapshot->size, m_options.parallelism);
    apply_object(stream, snapshot->key);
    apply_chain(chain_deltas(listing, m_state.txid, newest, std::nullopt, headers), signals);
  }

  void apply_chain(const DeltaChain& chain, StopSignals& signals) {
    for (const DeltaEntry& delta : chain.deltas) {
      if (signals.stopped()) return;
      apply_delta(delta, false);
    }
  }

  void apply_delta(const DeltaEntry& delta, bool spanning) {
    if (delta.size > ObjectStream::k_default_chunk_size) {
      // Big (compacted) files stream as parallel ranges.
      ObjectStream stream(m_storage, delta.key, delta.size, m_options.parallelism);
      apply_object(stream, delta.key, spanning);
      return;
    }
    // Small ones in one GET, without the threads of a stream.
    UniqueFd fd;
    std::optional<FdSource> source = download(delta.key, fd);
    if (!source) {
      throw StorageError("replica object '" + delta.key + "' in '" + m_storage.url() +
                             "' disappeared while catching up: is a prune running? trying again",
                         true);
    }
    apply_object(*source, delta.key, spanning);
  }

  // The compacted file that starts at or before `txid` and reaches furthest
  // past it; null if none does.
  static const DeltaEntry* spanning_delta(const ReplicaListing& listing, uint64_t txid) {
    const DeltaEntry* best = nullptr;
    for (const DeltaEntry& d : listing.deltas) {
      if (d.level > 0 && d.min_txid <= txid && d.max_txid > txid && (!best || d.max_txid > best->max_txid))
        best = &d;
    }
    return best;
  }

  FollowOptions m_options;
  CountingStorage m_storage;
  FollowMonitor& m_monitor;
  std::string m_state_dir;
  std::string m_state_path;
  UniqueFd m_lock;
  std::unique_ptr<Applier> m_applier;
  DbState m_state;
  std::set<std::string> m_bad_objects;  // objects that did not apply: never tried again
  LeaseWatch m_lease{m_storage};        // who writes the replica, for deltas found by name
  bool m_list_now = false;              // the lease changed hands: LIST before anything else
  std::string m_logged_error;  // the last error logged, when, and how many failures went unlogged since
  int64_t m_logged_error_ms = 0;
  uint64_t m_unlogged_errors = 0;
};

}  // namespace

bool followed_by_serve_replica(const std::string& state_dir) {
  const std::string lock_path = state_dir + "/serve.lock";
  const UniqueFd fd(::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  // A shared lock is refused only while serve-replica holds its exclusive one.
  return ::flock(fd.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

int run_serve_replica(const FollowOptions& options, Storage& storage, FollowMonitor& monitor) {
  if (options.db_path.empty()) throw UsageError("missing database path: walship serve-replica URL PATH");
  Follower follower(options, storage, monitor);
  return follower.run();
}

}  // namespace walship
