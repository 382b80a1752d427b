#include "lib/replica/replica_listing.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "lib/format/keys.h"

namespace walship {

ReplicaListing parse_listing(const std::vector<ObjectInfo>& objects) {
  ReplicaListing listing;
  for (const ObjectInfo& object : objects) {
    const auto info = format::parse_key(object.key);
    if (!info) continue;
    if (info->kind == format::ObjectKind::snapshot) {
      listing.snapshots.push_back({object.key, info->min_txid, object.size});
    } else {
      listing.deltas.push_back({object.key, info->level, info->min_txid, info->max_txid, object.size});
    }
  }
  std::sort(listing.snapshots.begin(), listing.snapshots.end(),
            [](const SnapshotEntry& a, const SnapshotEntry& b) { return a.txid < b.txid; });
  std::sort(listing.deltas.begin(), listing.deltas.end(), [](const DeltaEntry& a, const DeltaEntry& b) {
    // Equal (min, level) happens when a compacted file was written again
    // over fewer inputs (after a prune): the longer one sorts last, so the
    // planner, which tries the last candidate first, takes the longest reach.
    if (a.min_txid != b.min_txid) return a.min_txid < b.min_txid;
    return a.level != b.level ? a.level < b.level : a.max_txid < b.max_txid;
  });
  return listing;
}

ReplicaListing list_replica(Storage& storage) { return parse_listing(storage.list("")); }

format::FileHeader fetch_header(Storage& storage, const std::string& key) {
  MemorySink sink;
  if (!storage.get(key, sink, ByteRange{0, format::k_header_size})) {
    throw Failure("replica object '" + key + "' in '" + storage.url() +
                  "' disappeared while reading it: is a prune running? try again");
  }
  return format::decode_header(sink.data(), storage.url() + "/" + key);
}

HeaderCache::HeaderCache(Storage& storage)
    : m_fetch([&storage](const std::string& key) { return fetch_header(storage, key); }) {}

const format::FileHeader& HeaderCache::get(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    const auto it = m_headers.find(key);
    if (it != m_headers.end()) return it->second;
  }
  format::FileHeader header = m_fetch(key);
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_headers.emplace(key, header).first->second;
}

uint64_t HeaderCache::max_txid(const DeltaEntry& delta) {
  if (delta.max_txid != 0) return delta.max_txid;
  const format::FileHeader& header = get(delta.key);
  if (header.min_txid != delta.min_txid) {
    throw Failure("replica object '" + delta.key + "' says it starts at TXID " +
                  format::txid_hex(header.min_txid) +
                  ": the object was renamed or corrupted; run walship verify");
  }
  return header.max_txid;
}

void HeaderCache::prefetch(const std::vector<std::string>& keys, int parallelism) {
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    for (size_t i = next++; i < keys.size(); i = next++) {
      try {
        get(keys[i]);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = keys.size();
      }
    }
  };
  const int threads = std::clamp(parallelism, 1, static_cast<int>(std::max<size_t>(keys.size(), 1)));
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

uint64_t newest_txid(const ReplicaListing& listing, HeaderCache& headers) {
  uint64_t newest = listing.snapshots.empty() ? 0 : listing.snapshots.back().txid;
  for (const DeltaEntry& delta : listing.deltas) {
    if (delta.level > 0) newest = std::max(newest, delta.max_txid);
  }
  // L0 deltas are contiguous, so only the one with the highest min can hold the newest TXID.
  const auto last_l0 = std::find_if(listing.deltas.rbegin(), listing.deltas.rend(),
                                    [](const DeltaEntry& d) { return d.level == 0; });
  if (last_l0 != listing.deltas.rend()) newest = std::max(newest, headers.max_txid(*last_l0));
  return newest;
}

}  // namespace walship
