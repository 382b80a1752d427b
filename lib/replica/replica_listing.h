// What one LIST of a replica prefix says: its snapshots and deltas by TXID,
// and the lazily fetched file headers that carry what keys do not (an L0
// delta's max TXID, commit times).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/storage.h"
#include "lib/format/replica_file.h"

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

struct ReplicaListing {
  std::vector<SnapshotEntry> snapshots;  // ascending TXID
  std::vector<DeltaEntry> deltas;        // ascending (min_txid, level, max_txid)
  bool empty() const { return snapshots.empty() && deltas.empty(); }
};

// Pure: sorts the replica's objects out of a LIST result; unknown keys are ignored.
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

  const format::FileHeader& get(const std::string& key);
  // The max TXID of a delta: from its key (L1+) or its header (L0).
  uint64_t max_txid(const DeltaEntry& delta);
  // Fetches many headers with up to `parallelism` requests in flight.
  void prefetch(const std::vector<std::string>& keys, int parallelism);

 private:
  Fetch m_fetch;
  std::mutex m_mutex;
  std::map<std::string, format::FileHeader> m_headers;
};

// Downloads and decodes just the 64-byte header of an object.
format::FileHeader fetch_header(Storage& storage, const std::string& key);

// The newest TXID the replica reaches (0 for an empty replica).
uint64_t newest_txid(const ReplicaListing& listing, HeaderCache& headers);

}  // namespace walship
