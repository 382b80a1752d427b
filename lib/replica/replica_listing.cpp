#include "lib/replica/replica_listing.h"

#include <algorithm>
#include <functional>
#include <set>

#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/util/byte_stream.h"
#include "lib/util/parallel.h"

namespace walship {

ReplicaListing parse_listing(const std::vector<ObjectInfo>& objects) {
  ReplicaListing listing;
  for (const ObjectInfo& object : objects) {
    if (const auto fence = format::parse_fence_key(object.key)) listing.fences.push_back(*fence);
    if (const auto seq = format::parse_lease_key(object.key))
      listing.newest_lease_seq = std::max(listing.newest_lease_seq, *seq);
  }
  std::sort(listing.fences.begin(), listing.fences.end(),
            [](const format::FenceInfo& a, const format::FenceInfo& b) { return a.after < b.after; });
  auto fenced_off = [&](uint64_t min, uint64_t max) -> const format::FenceInfo* {
    for (const format::FenceInfo& f : listing.fences) {
      if (max > f.after && min < f.fence) return &f;
    }
    return nullptr;
  };
  for (const ObjectInfo& object : objects) {
    const auto info = format::parse_key(object.key);
    if (!info) continue;
    const uint64_t last = info->max_txid != 0 ? info->max_txid : info->min_txid;
    if (const format::FenceInfo* f = fenced_off(info->min_txid, last)) {
      listing.superseded.push_back({object.key, object.size, info->min_txid, *f});
      continue;
    }
    if (info->kind == format::ObjectKind::snapshot) {
      listing.snapshots.push_back({object.key, info->min_txid, object.size});
    } else {
      listing.deltas.push_back({object.key, info->level, info->min_txid, info->max_txid, object.size});
    }
  }
  std::sort(listing.superseded.begin(), listing.superseded.end(),
            [](const SupersededEntry& a, const SupersededEntry& b) { return a.key < b.key; });
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

ReplicaListing exclude_objects(const ReplicaListing& listing, const std::set<std::string>& excluded) {
  ReplicaListing kept;
  kept.fences = listing.fences;
  kept.superseded = listing.superseded;
  for (const SnapshotEntry& s : listing.snapshots) {
    if (!excluded.contains(s.key)) kept.snapshots.push_back(s);
  }
  for (const DeltaEntry& d : listing.deltas) {
    if (!excluded.contains(d.key)) kept.deltas.push_back(d);
  }
  return kept;
}

HeaderCache::HeaderCache(Storage& storage)
    : m_fetch([&storage](const std::string& key) { return fetch_header(storage, key); }) {}

namespace {

// A header that names other TXIDs (or another kind) than its key: a copy
// or a renamed object, which must never stand in for what the key names.
void check_names_key(const std::string& key, const format::FileHeader& header) {
  const std::optional<format::KeyInfo> info = format::parse_key(key);
  if (!info) return;
  const bool snapshot = info->kind == format::ObjectKind::snapshot;
  std::string says;
  if (snapshot != (header.kind == format::FileKind::snapshot)) {
    says = header.kind == format::FileKind::snapshot ? "is a snapshot" : "is a delta";
  } else if (header.min_txid != info->min_txid) {
    says = (snapshot ? "is of TXID " : "starts at TXID ") + format::txid_hex(header.min_txid);
  } else if (info->max_txid != 0 && header.max_txid != info->max_txid) {
    says = "ends at TXID " + format::txid_hex(header.max_txid);
  } else {
    return;
  }
  throw BadObjectError(key, "replica object '" + key + "' says it " + says +
                                ": the object was renamed or corrupted; run walship verify");
}

}  // namespace

void HeaderCache::add(const std::string& key, const format::FileHeader& header) {
  std::lock_guard<std::mutex> lock(m_mutex);
  m_headers.emplace(key, Known{header, ++m_added});
}

uint64_t HeaderCache::mark() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_added;
}

void HeaderCache::retain(const std::set<std::string>& keys, uint64_t mark) {
  std::lock_guard<std::mutex> lock(m_mutex);
  std::erase_if(m_headers,
                [&](const auto& entry) { return entry.second.added <= mark && !keys.count(entry.first); });
}

void HeaderCache::forget(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> lock(m_mutex);
  for (const std::string& key : keys) m_headers.erase(key);
}

const format::FileHeader& HeaderCache::get(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    const auto it = m_headers.find(key);
    if (it != m_headers.end()) return it->second.header;
  }
  format::FileHeader header;
  try {
    header = m_fetch(key);
  } catch (const StorageError&) {
    throw;
  } catch (const BadObjectError&) {
    throw;
  } catch (const Failure& e) {
    throw BadObjectError(key, e.what());
  }
  check_names_key(key, header);
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_headers.emplace(key, Known{header, ++m_added}).first->second.header;
}

uint64_t HeaderCache::max_txid(const DeltaEntry& delta) {
  if (delta.max_txid != 0) return delta.max_txid;
  return get(delta.key).max_txid;
}

void HeaderCache::prefetch(const std::vector<std::string>& keys, int parallelism) {
  parallel_for(keys.size(), parallelism, [&](size_t i) { get(keys[i]); });
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

std::optional<std::pair<std::string, uint64_t>> object_ending_at(const ReplicaListing& listing,
                                                                 HeaderCache& headers, uint64_t txid) {
  for (const SnapshotEntry& s : listing.snapshots) {
    if (s.txid == txid) return std::make_pair(s.key, s.size);
  }
  for (auto d = listing.deltas.rbegin(); d != listing.deltas.rend(); ++d) {
    if (headers.max_txid(*d) == txid) return std::make_pair(d->key, d->size);
  }
  return std::nullopt;
}

uint64_t fetch_post_checksum(Storage& storage, const std::string& key, uint64_t size) {
  MemorySink sink;
  std::optional<format::FileTrailer> trailer;
  if (size >= format::k_header_size + format::k_trailer_size &&
      storage.get(key, sink, ByteRange{size - format::k_trailer_size, format::k_trailer_size})) {
    trailer = format::decode_trailer(sink.data());
  }
  if (!trailer) {
    throw BadObjectError(key, "corrupt replica file '" + storage.url() + "/" + key +
                                  "': no valid trailer; run walship verify on the replica");
  }
  return trailer->post_checksum;
}

std::optional<PointFound> find_point_by_checksum(Storage& storage, const ReplicaListing& listing,
                                                 HeaderCache& headers, uint64_t sum, int parallelism,
                                                 const std::function<void(const BadObjectError&)>& on_bad) {
  // Whether `check` found the point; a bad object passes over or throws.
  auto matches = [&](const std::function<bool()>& check) {
    try {
      return check();
    } catch (const BadObjectError& e) {
      if (!on_bad) throw;
      on_bad(e);
      return false;
    }
  };
  std::vector<std::string> keys;
  std::set<uint64_t> starts;
  for (const DeltaEntry& d : listing.deltas) {
    keys.push_back(d.key);
    starts.insert(d.min_txid);
  }
  try {
    headers.prefetch(keys, parallelism);
  } catch (const BadObjectError&) {
    // Met again, and judged, in the walk below.
  }
  std::optional<PointFound> found;
  for (auto d = listing.deltas.rbegin(); d != listing.deltas.rend() && !found; ++d) {
    matches([&] {
      const format::FileHeader& header = headers.get(d->key);
      if (header.pre_checksum == sum && header.min_txid > 0) {
        found = PointFound{header.min_txid - 1, 0};
      } else if (!starts.contains(header.max_txid + 1) &&
                 fetch_post_checksum(storage, d->key, d->size) == sum) {
        found = PointFound{header.max_txid, header.commit_time_ms};
      }
      return found.has_value();
    });
  }
  // A snapshot no delta continues (its writer started another history).
  for (auto s = listing.snapshots.rbegin(); s != listing.snapshots.rend() && !found; ++s) {
    matches([&] {
      if (fetch_post_checksum(storage, s->key, s->size) == sum)
        found = PointFound{s->txid, headers.get(s->key).commit_time_ms};
      return found.has_value();
    });
  }
  return found;
}

}  // namespace walship
