// What one LIST of a replica prefix says: its snapshots and deltas by TXID,
// and the lazily fetched file headers that carry what keys do not (an L0
// delta's max TXID, commit times).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/storage/storage.h"

namespace walship {

struct SnapshotEntry {
  std::string key;
  uint64_t txid = 0;
  uint64_t size = 0;
};

struct DeltaEntry {
  std::string key;
  int level = 0;
  uint64_t min_txid = 0;
  uint64_t max_txid = 0;  // 0 for L0 until its header is read
  uint64_t size = 0;
};

// An object a fenced writer wrote after another writer took the replica
// over (DESIGN.md, "Fencing"): no planner sees it, prune deletes it.
struct SupersededEntry {
  std::string key;
  uint64_t size = 0;
  uint64_t min_txid = 0;
  format::FenceInfo fence;  // the fence it lies behind
};

struct ReplicaListing {
  std::vector<SnapshotEntry> snapshots;     // ascending TXID
  std::vector<DeltaEntry> deltas;           // ascending (min_txid, level, max_txid)
  std::vector<format::FenceInfo> fences;    // ascending `after`
  std::vector<SupersededEntry> superseded;  // ascending key
  uint64_t newest_lease_seq = 0;            // the newest lease record's seq (lease.h); 0: none
  bool empty() const { return snapshots.empty() && deltas.empty(); }
};

// A replica object that cannot be used (bad magic, checksum mismatch, decode
// failure, wrong TXIDs for its name, chain mismatch): restore plans around it.
// Storage errors (network, permissions) are StorageError, never this.
class BadObjectError : public Failure {
 public:
  BadObjectError(std::string key, const std::string& message) : Failure(message), m_key(std::move(key)) {}
  const std::string& key() const { return m_key; }

 private:
  std::string m_key;
};

// Pure: `listing` without the objects whose keys are in `excluded`.
ReplicaListing exclude_objects(const ReplicaListing& listing, const std::set<std::string>& excluded);

// Pure: sorts the replica's objects out of a LIST result; unknown keys are
// ignored. An object with any TXID after a fence's `after` and before its
// `fence` goes to `superseded`, never to `snapshots` or `deltas`: only the
// fenced writer can have written it, after the takeover. (An L0 delta's
// key names its first TXID only; one that began at or before `after` was
// already there when the new writer looked, so its first TXID decides.)
ReplicaListing parse_listing(const std::vector<ObjectInfo>& objects);

// One LIST of the whole prefix.
ReplicaListing list_replica(Storage& storage);

// Reads file headers with one small range GET each and remembers them.
// Thread-safe. Tests inject `fetch` to plan without storage.
class HeaderCache {
 public:
  using Fetch = std::function<format::FileHeader(const std::string& key)>;
  explicit HeaderCache(Storage& storage);
  explicit HeaderCache(Fetch fetch) : m_fetch(std::move(fetch)) {}

  // Throws BadObjectError naming the key when the header does not decode, or
  // names other TXIDs (or another kind) than the key.
  const format::FileHeader& get(const std::string& key);
  // The max TXID of a delta: from its key (L1+) or its header (L0).
  uint64_t max_txid(const DeltaEntry& delta);
  // Fetches many headers with up to `parallelism` requests in flight.
  void prefetch(const std::vector<std::string>& keys, int parallelism);
  // Records the header of an object written here (objects are immutable: a
  // key already known keeps its header), so that no one fetches it.
  void add(const std::string& key, const format::FileHeader& header);
  // A point in the cache's history, before a listing: retain() keeps what
  // came after it, which that listing may not show.
  uint64_t mark() const;
  // Forgets the headers known before `mark` but those of `keys` (the
  // objects a listing taken after the mark still shows), or those of `keys`
  // (deleted). Not while another thread holds a reference get() returned.
  void retain(const std::set<std::string>& keys, uint64_t mark);
  void forget(const std::vector<std::string>& keys);

 private:
  Fetch m_fetch;
  mutable std::mutex m_mutex;
  struct Known {
    format::FileHeader header;
    uint64_t added = 0;  // m_added when it was
  };
  std::map<std::string, Known> m_headers;
  uint64_t m_added = 0;
};

// Downloads and decodes just the 64-byte header of an object.
format::FileHeader fetch_header(Storage& storage, const std::string& key);

// The newest TXID the replica reaches (0 for an empty replica).
uint64_t newest_txid(const ReplicaListing& listing, HeaderCache& headers);

// The object that ends at `txid` (a snapshot at it, or a delta ending
// there), as (key, size); nullopt when none does. Searched from the newest
// end: an L0 delta's end is in its header, and a replica holds thousands of
// them, so a search from the oldest would GET each header.
std::optional<std::pair<std::string, uint64_t>> object_ending_at(const ReplicaListing& listing,
                                                                 HeaderCache& headers, uint64_t txid);

// The whole-database checksum after an object (from its trailer: one range
// GET). Throws BadObjectError naming the object when the trailer is corrupt.
uint64_t fetch_post_checksum(Storage& storage, const std::string& key, uint64_t size);

// Where a database whose whole-database checksum is `sum` stands among the
// replica's points, newest first: the state before a delta (its header's
// checksum-before), after a delta no other delta continues (its trailer:
// the newest, or one a snapshot of another writer followed), or a
// snapshot's (its trailer). Headers are fetched `parallelism` at a time.
// With `on_bad`, a bad object is passed over and `on_bad` told of it;
// without, it throws BadObjectError.
struct PointFound {
  uint64_t txid = 0;
  uint64_t commit_ms = 0;  // 0 for the state before a delta (not recorded there)
};
std::optional<PointFound> find_point_by_checksum(
    Storage& storage, const ReplicaListing& listing, HeaderCache& headers, uint64_t sum, int parallelism,
    const std::function<void(const BadObjectError&)>& on_bad = {});

}  // namespace walship
