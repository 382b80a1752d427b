// Continuous WAL shipping for one database (DESIGN.md, "Replicate"): every
// whole transaction committed to the WAL becomes an L0 delta of each of the
// database's replicas, one TXID per ship.
//
// How it stays correct:
// - A read transaction is held at all times (connection m_reader). While it
//   is held SQLite cannot restart the WAL over frames walship has not read:
//   with a read mark inside the WAL no restart is possible at all, and with
//   read mark 0 no frame can be backfilled, so a restart only ever drops
//   frames that existed when the read began ("the pin": the WAL generation
//   and frame count the read sees, from sqlite3_snapshot_get). So a replica
//   may follow the WAL into a new generation only if it had shipped up to
//   the pin; otherwise, or if frames it still needed were overwritten, it
//   has lost continuity. Checkpoints take the writer lock (m_writer) so the
//   app cannot commit between the last ship and the new read.
// - Frames are read straight from the -wal file, checked against the salts
//   and the checksum chain, and shipped only up to the last commit frame that
//   the wal-index (-shm) counts as committed, so a writer killed in the middle
//   of a commit never leaks a transaction SQLite will drop.
// - Each replica remembers, per page, the hash of the state it shipped. A
//   delta's checksums come from it in O(changed pages), and when continuity
//   is lost (the WAL or the database file was replaced, walship was down while
//   the app checkpointed) the database is rehashed and exactly the pages that
//   differ are shipped: a valid delta, never a guess. Only without a trusted
//   shipped state (first run, a lost local state that disagrees with the
//   replica, a new page size) is a new snapshot written.
// - walship takes over checkpointing: past a threshold it moves its read to
//   the shipped end and checkpoints (PASSIVE) up to there without blocking
//   the app; at most once a second it then ships and checkpoints the rest
//   under the writer lock and re-takes the read on the checkpointed WAL, so
//   the app's next commit restarts the WAL.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lib/format/replica_file.h"
#include "lib/replica/local_state.h"
#include "lib/replica/replicate_metrics.h"
#include "lib/replica/replicator_options.h"
#include "lib/sqlite/sqlite.h"
#include "lib/storage/storage.h"
#include "lib/wal/wal_scan.h"

namespace walship {

struct ReplicaTarget;
struct DeltaRecord;

class Replicator {
 public:
  // Milliseconds since the Unix epoch.
  using Clock = std::function<int64_t()>;

  // `replicas`: the storage of each replica of this database (owned).
  // `monitor`, if any, is told what was shipped, checkpointed, compacted...
  // (for /metrics) and must outlive the Replicator. `clock` stamps what is
  // written (the commit time of deltas and snapshots) and times the writer
  // lock; empty: the wall clock (now_ms()). Scheduling uses the `now` that
  // step() is given, so a test drives both and no real clock is read.
  Replicator(ReplicatorOptions options, std::vector<std::unique_ptr<Storage>> replicas,
             ReplicateMonitor* monitor = nullptr, Clock clock = {});
  ~Replicator();
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  const std::string& db_path() const { return m_options.db_path; }
  bool enable_wal() const { return m_options.enable_wal; }

  // Opens the database (UsageError if it is missing, not SQLite or not in WAL
  // mode without enable_wal), takes the read transaction and reconciles each
  // replica: an initial snapshot for an empty one, a resume from the local
  // state, or a rehash. Throws on failure; call again to retry.
  void start();
  bool started() const { return m_started; }

  // Ships what was committed since the last call to every replica, then does
  // any checkpoint, snapshot or compaction that is due. Returns the time
  // (ms since the epoch) at which timed work is next due, if any. Storage
  // failures are thrown after the shipped state was left consistent: the
  // next call ships the same frames again.
  std::optional<int64_t> step(int64_t now);
  // Pages shipped since the start, summed over the replicas.
  uint64_t shipped_pages() const { return m_shipped_pages; }

  // The last call before exiting: ships everything committed, no timed work.
  void finish();

  // `walship snapshot` asks the running replicate (control_socket.h): the
  // next step writes a snapshot of the replica whose URL is `replica_url`
  // (every replica when empty), of the state it shipped up to. Any thread.
  void request_snapshot(const std::string& replica_url);
  // A preemption notice (replicate_loop): the next step checkpoints the
  // whole WAL, whatever its size, under the writer lock too, so the database
  // file alone holds what was shipped should the disk outlive the machine.
  // Any thread.
  void request_checkpoint() { m_checkpoint_requested = true; }
  // After a step, once per request it served: "ok TXID" or "error ...".
  std::optional<std::string> take_snapshot_answer();
  // A `walship sync` waits (replicate_loop): the next step (or finish())
  // confirms each replica's lease after shipping, so that covered_change()
  // can answer it. Any thread.
  void request_durable_ack() { m_ack_requested = true; }
  // After a step or finish() that confirmed the leases (asked for by
  // request_durable_ack() before it began), whether or not it threw: the
  // wal-index commit counter (iChange) read at its start, if every replica
  // now holds every commit it counted, in the chain restores follow;
  // nullopt when that is not known (not asked, no index yet, a replica lost
  // or behind, a lease not confirmed). `walship sync` answers from it.
  std::optional<uint32_t> covered_change() const { return m_covered_change; }
  // A replica's request being retried right now, if any
  // (Storage::retrying_error()). Any thread.
  std::string retrying_error() const;

 private:
  void open_database();
  void open_reader();
  void close_database();
  sqlite::Database& writer();
  bool files_replaced();
  void report_storage_warnings();
  void take_lease(ReplicaTarget& target);
  void reconcile(ReplicaTarget& target);
  void write_fence(ReplicaTarget& target);
  wal::WalPosition pin();
  void record_pin();
  void pin_read_locked();

  // The pages of one delta: `count` pages (and `commits` SQLite
  // transactions, 0 for a resync) that write() adds to the writer, in
  // ascending order, returning the whole-database checksum after them.
  struct DeltaPages {
    size_t count = 0;
    uint64_t commits = 0;
    std::function<uint64_t(format::ReplicaWriter&)> write;
  };
  struct ShippedDelta {
    uint64_t txid = 0;
    uint64_t checksum = 0;
    uint64_t bytes = 0;
  };
  ShippedDelta stage_delta(ReplicaTarget& target, uint32_t db_pages, const DeltaPages& pages);
  void record_delta(ReplicaTarget& target, const DeltaRecord& record, uint64_t commits, size_t pages,
                    int spool, uint64_t bytes);
  // false: another writer took the TXID (the target was reconciled).
  bool upload_staged(ReplicaTarget& target);
  bool stage_all();
  // cap: ship only what the read pinned at `cap` sees (nullopt: everything committed).
  std::optional<wal::CommittedFrames> unshipped_frames(ReplicaTarget& target,
                                                       const std::optional<wal::WalPosition>& cap);
  void ship_new_frames(ReplicaTarget& target, const std::optional<wal::WalPosition>& cap = std::nullopt,
                       bool defer = false);
  bool reached_a_pin(const wal::WalPosition& position) const;
  std::optional<uint32_t> covered(const std::optional<wal::WalIndexHeader>& at_start);
  std::optional<wal::WalIndexHeader> read_index();
  void resync(ReplicaTarget& target, const wal::WalPosition& pinned);
  void adopt_replica(ReplicaTarget& target, const wal::WalPosition& pinned);
  void ship_difference(ReplicaTarget& target, const wal::WalPosition& pinned);
  void write_snapshot(ReplicaTarget& target, uint64_t txid, const wal::WalPosition& pinned, bool check);
  void checkpoint_if_due(int64_t now);
  void checkpoint_locked();
  void truncate_wal();
  bool scheduled_snapshot(ReplicaTarget& target, int64_t now, bool requested);
  void answer_snapshot_request(int64_t now);
  std::optional<int64_t> maintain(ReplicaTarget& target, int64_t now);
  void maintenance(ReplicaTarget& target, int64_t now, bool compact, std::optional<uint64_t> prune_at,
                   const std::atomic<bool>* stop);
  std::optional<int64_t> maintenance_due(const ReplicaTarget& target) const;
  bool retention_on() const { return m_options.retention_enabled && !m_options.retention.empty(); }
  void report_compactions(ReplicaTarget& target);
  std::optional<uint64_t> retention_due(ReplicaTarget& target, int64_t now);
  void retention(ReplicaTarget& target, uint64_t shipped, const std::atomic<bool>* stop);
  void ship_all(const std::optional<wal::WalPosition>& cap = std::nullopt);
  // retry: an earlier try may have landed; an object with the same bytes is this one.
  bool upload(ReplicaTarget& target, int spool, const std::string& key, uint64_t size, bool retry);
  format::FileHeader next_delta_header(const ShippedState& state, uint32_t db_pages) const;
  template <typename F>
  void report(F&& f) {
    if (m_monitor) m_monitor->update(std::forward<F>(f));
  }
  void report_txid(ReplicaTarget& target);

  std::atomic<bool> m_checkpoint_requested{false};
  std::atomic<bool> m_ack_requested{false};
  std::mutex m_request_mutex;  // guards the two below (request_snapshot() is called from any thread)
  std::optional<std::string> m_snapshot_request;  // the replica URL asked for ("": every replica)
  std::optional<std::string> m_snapshot_answer;
  int m_snapshot_tries = 0;  // steps that could not write the snapshot asked for
  ReplicatorOptions m_options;
  ReplicateMonitor* m_monitor = nullptr;
  Clock m_clock;
  std::vector<std::unique_ptr<ReplicaTarget>> m_targets;
  std::string m_wal_path;
  std::string m_shm_path;
  std::string m_state_dir;
  std::unique_ptr<sqlite::Database> m_reader;  // holds the read transaction
  // The writer lock and checkpoints, and the next read while pin() moves it; see writer().
  std::unique_ptr<sqlite::Database> m_writer;
  // Walship's own descriptor of the WAL lives for one step (or finish()):
  // SQLite takes no lock on the WAL, so closing it drops none, and an idle
  // database costs no descriptor (thousands of them fit the fd limit).
  UniqueFd m_wal_fd;
  struct WalForAStep {
    explicit WalForAStep(UniqueFd& fd) : m_fd(fd) {}
    ~WalForAStep() { m_fd.reset(); }
    WalForAStep(const WalForAStep&) = delete;
    WalForAStep& operator=(const WalForAStep&) = delete;
    UniqueFd& m_fd;
  };
  UniqueFd m_shm_fd;  // closed after the connections, never before (close_database)
  uint64_t m_db_inode = 0;
  uint64_t m_wal_inode = 0;
  uint32_t m_page_size = 0;
  wal::WalPosition m_pin;  // where the held read transaction sees the WAL end
  // While pin() moves the read, where the old one (still held) sees it.
  std::optional<wal::WalPosition> m_previous_pin;
  bool m_read_mark_zero = false;  // the read began on a fully checkpointed WAL
  int64_t m_last_restart_ms = 0;  // the last checkpoint under the writer lock
  uint64_t m_shipped_pages = 0;
  std::optional<uint32_t> m_covered_change;  // see covered_change()
  bool m_started = false;
};

}  // namespace walship
