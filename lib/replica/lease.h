// One writer per replica (DESIGN.md, "Fencing"): the lease a replicate (or
// a snapshot) holds on a replica while it writes there.
//
// The lease is a sequence of immutable records, "lease/<seq>", each written
// only if absent (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`, file:
// link(2), SFTP: an exclusive open). Taking, renewing and releasing the
// lease all write the next record, so of two writers racing for one seq
// exactly one succeeds, and a holder whose next record someone else wrote
// knows at once that it was taken over: fenced. Holding a lease needs no
// read: the holder knows its seq. Only taking it lists and reads.
//
// The lease alone cannot stop a paused writer's write that was already on
// its way; that is what fences are for (fence_txid(), replica_listing.h).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/format/keys.h"
#include "lib/replica/local_state.h"
#include "lib/storage/storage.h"
#include "lib/util/error.h"

namespace walship {

// Who a process is, as a lease record names it.
struct LeaseIdentity {
  std::string writer;   // random, 16 hex digits, new in every process
  std::string host;     // gethostname()
  std::string boot_id;  // the kernel's boot id: with pid_ns, says whether `pid` means
  std::string pid_ns;   // the same process here as where the record was written
  int64_t pid = 0;
  // The process's start (clock ticks after boot; 0: unknown, a record of an
  // older walship): a pid a later process reuses is not the holder.
  uint64_t start = 0;
  bool operator==(const LeaseIdentity&) const = default;
};

// This process's identity (the writer id is drawn once per process).
const LeaseIdentity& this_process();

struct LeaseRecord {
  LeaseIdentity holder;
  uint64_t generation = 0;  // +1 each time a writer takes the lease
  int64_t since_ms = 0;     // when this holder took it (Unix ms)
  int64_t expires_ms = 0;   // the holder's clock at this record's write, plus the TTL
  bool released = false;    // a clean stop: anyone may take it, no fence needed
  // This holder took the lease behind a fence (the previous holder may
  // still write): a fence object of its generation follows.
  bool fenced = false;
  bool operator==(const LeaseRecord&) const = default;
};

std::string encode_lease(const LeaseRecord& record);
// nullopt when `text` is not a lease record.
std::optional<LeaseRecord> decode_lease(std::string_view text);

// What a writer finding `current` may do (pure; `holder_gone` says whether a
// holder of this machine's pid namespace no longer runs: its pid is free,
// a zombie, or another process's since).
struct LeaseDecision {
  bool take = false;
  // The previous holder may still be alive (an expired or taken lease):
  // the taker fences before it writes anything.
  bool fence = false;
  std::string why;  // "free", "released", "ours", "holder gone", "expired", "taken over", "held"
};
LeaseDecision decide_lease(const std::optional<LeaseRecord>& current, const LeaseIdentity& me, int64_t now_ms,
                           bool take_over, const std::function<bool(const LeaseIdentity&)>& holder_gone);

// The first TXID of a writer of `generation` that fences: above every TXID a
// writer of an older generation can reach (each stays under 2^40 TXIDs past
// its own fence), so the newest point is always the holder's.
uint64_t fence_txid(uint64_t generation);

// The TXID a writer's first object must take when it is not newest + 1: the
// fence of its own generation after a takeover (`fenced`), or the fence of
// an earlier takeover whose snapshot was never written (a fence object with
// after == newest). Never inside or below what the replica already holds.
std::optional<uint64_t> first_txid_fence(const std::vector<format::FenceInfo>& fences, uint64_t newest,
                                         bool fenced, uint64_t generation);

// Writes the fence object announcing `fence` (replica_listing.h): from then
// on readers ignore what an older writer still writes inside it.
void write_fence(Storage& storage, const format::FenceInfo& fence);

// A node back with old data: its local state shipped up to a TXID below the
// replica's `newest`, and the lease's previous holder (who wrote since) is
// not of its lineage. Returns that TXID; nullopt when not behind (or when
// the state predates writer ids).
std::optional<uint64_t> behind_replica(const std::optional<ShippedState>& local, uint64_t newest,
                                       const std::string& previous_writer);
// The one error for such a node; `more` is appended to what to do.
FencedError behind_error(const std::string& db_path, const std::string& replica, uint64_t shipped_txid,
                         uint64_t newest, const std::string& more = "");

// The replica's newest lease record and its seq (one LIST, one GET);
// nullopt when no writer ever took the lease. Throws Failure when the
// newest is not a lease record, StorageError when the store fails.
std::optional<std::pair<uint64_t, LeaseRecord>> newest_lease_record(Storage& storage);
// The record at `seq`; nullopt when there is none.
std::optional<LeaseRecord> read_lease_record(Storage& storage, uint64_t seq);

// "holder host/pid 123 (writer 0123...), since ..., expires ..." for messages.
std::string describe_holder(const LeaseRecord& record);

// What a reader that finds deltas by name between its LISTs (serve-replica)
// knows of the replica's writer: enough to never take a delta a fenced
// writer landed after a takeover for the holder's. Between LISTs, nothing
// else tells it that a fence appeared; the lease's next record does.
class LeaseWatch {
 public:
  explicit LeaseWatch(Storage& storage) : m_storage(storage) {}
  // After a LIST whose newest lease record is `newest_seq` (0: none): one
  // GET when it is not the one already known.
  void listed(uint64_t newest_seq);
  // Whether the holder may have changed since the last look: reads the
  // records after the known one (normally one GET, a miss, and one of the
  // known record, which tells "nothing new" from "deleted since"). True
  // sends the reader to a LIST before it applies anything found by name.
  bool holder_changed();
  // Whether the holder took the lease behind a fence that `fences` does not
  // hold yet, and its lease still runs (`now_ms`): what a LIST shows past the
  // previous writer's newest may be that writer's, superseded once the fence
  // lands, so the reader waits for it.
  bool fence_pending(const std::vector<format::FenceInfo>& fences, int64_t now_ms) const;

 private:
  Storage& m_storage;
  uint64_t m_seq = 0;                   // the newest record known; 0: none
  std::optional<LeaseRecord> m_record;  // its text; nullopt: none, or unreadable
};

class Lease {
 public:
  // Unix milliseconds.
  using Clock = std::function<int64_t()>;
  using Sleep = std::function<void(int64_t ms)>;

  // `me`: who takes it (tests play several writers in one process).
  Lease(Storage& storage, int64_t ttl_ms, bool take_over, Clock clock = {}, Sleep sleep = {},
        LeaseIdentity me = this_process());
  // Releases the lease if still held.
  ~Lease() { release(); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  struct Taken {
    bool fence = false;  // see LeaseDecision
    std::optional<LeaseRecord> previous;
  };
  // Takes the lease: one LIST of lease/, one GET, one conditional PUT (and
  // again if another writer won the race). A lease another writer holds is
  // waited for until it expires (at most about one TTL): taken then if its
  // holder renewed nothing (it is gone, or paused: fenced either way).
  // Throws FencedError naming the holder when it renewed (it is alive) and
  // !take_over, ending with `what_to_do`; StorageError when the store fails.
  // `wait` false: a held lease throws at once.
  Taken acquire(
      bool wait = true,
      std::string_view what_to_do =
          "Stop that writer first (a clean stop releases its lease), or, if it is gone for good, pass "
          "--take-over");

  // Writes the next record when a renewal is due (a third of the TTL after
  // the last). Throws FencedError when another writer wrote it first.
  void renew_if_due(int64_t now_ms);
  // When renew_if_due() next has work; 0 before acquire().
  int64_t renew_due_ms() const;

  // On a clean stop: a released record, so the next writer starts at once
  // without a fence. Best effort (a failure only costs the next writer a
  // wait for the expiry); nothing when the lease is not held.
  void release();

  // For a durable acknowledgement, after a write: whether the lease is still
  // this writer's, so that what it wrote is in the chain restores follow:
  // held, not expired by this clock (another writer may take an expired
  // one), and no later record (one GET: a --take-over from a live writer).
  // A later record marks the lease lost: the next renew_if_due() throws
  // FencedError. StorageError when the GET fails.
  bool confirm_held();

  bool held() const { return m_seq != 0 && !m_lost; }
  uint64_t generation() const { return m_record.generation; }
  // Whether conditional writes are atomic on this store; else the lease is
  // advisory (see Storage::atomic_put_if_absent()).
  bool enforced() const { return m_storage.atomic_put_if_absent(); }

 private:
  bool write_next(const LeaseRecord& record);
  std::optional<std::pair<uint64_t, LeaseRecord>> read_newest();
  std::optional<LeaseRecord> read_record(uint64_t seq);  // nullopt: none at seq
  void forget_old_records();

  Storage& m_storage;
  LeaseIdentity m_me;
  int64_t m_ttl_ms;
  bool m_take_over;
  Clock m_clock;
  Sleep m_sleep;
  uint64_t m_seq = 0;        // the seq of our newest record; 0: not held
  int64_t m_renewed_ms = 0;  // when we wrote it
  LeaseRecord m_record;
  bool m_lost = false;
  uint64_t m_oldest_kept = 0;  // lease records below this are deleted
};

}  // namespace walship
