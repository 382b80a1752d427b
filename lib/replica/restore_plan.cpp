#include "lib/replica/restore_plan.h"

#include <algorithm>

#include "lib/format/keys.h"
#include "lib/util/time.h"

namespace walship {

namespace {

// The newest snapshot allowed by the target, or nullptr.
const SnapshotEntry* choose_snapshot(const ReplicaListing& listing, const RestoreTarget& target,
                                     uint64_t target_txid, HeaderCache& headers) {
  for (auto it = listing.snapshots.rbegin(); it != listing.snapshots.rend(); ++it) {
    if (it->txid > target_txid) continue;
    if (target.time_ms && headers.get(it->key).commit_time_ms > *target.time_ms) continue;
    return &*it;
  }
  return nullptr;
}

std::string describe_target(const RestoreTarget& target, uint64_t target_txid) {
  if (target.time_ms) return "time " + format_rfc3339(*target.time_ms);
  return "TXID " + format::txid_hex(target_txid);
}

// The greedy chain from `snapshot` toward `target_txid`, as far as it goes.
RestorePlan chain_from(const ReplicaListing& listing, const SnapshotEntry& snapshot,
                       const RestoreTarget& target, uint64_t target_txid, HeaderCache& headers) {
  RestorePlan plan;
  plan.snapshot = snapshot;
  plan.txid = snapshot.txid;
  plan.commit_time_ms = headers.get(snapshot.key).commit_time_ms;
  DeltaChain chain = chain_deltas(listing, plan.txid, target_txid, target.time_ms, headers);
  if (!chain.deltas.empty()) {
    plan.deltas = std::move(chain.deltas);
    plan.txid = chain.txid;
    plan.commit_time_ms = chain.commit_time_ms;
  }
  return plan;
}

}  // namespace

DeltaChain chain_deltas(const ReplicaListing& listing, uint64_t from_txid, uint64_t target_txid,
                        std::optional<uint64_t> target_time_ms, HeaderCache& headers) {
  DeltaChain chain;
  chain.txid = from_txid;
  while (chain.txid < target_txid) {
    // Deltas starting right after the current point, highest level (longest reach) first.
    const auto first = std::lower_bound(listing.deltas.begin(), listing.deltas.end(), chain.txid + 1,
                                        [](const DeltaEntry& d, uint64_t min) { return d.min_txid < min; });
    auto last = first;
    while (last != listing.deltas.end() && last->min_txid == chain.txid + 1) ++last;
    bool advanced = false;
    for (auto it = std::make_reverse_iterator(last); it != std::make_reverse_iterator(first); ++it) {
      DeltaEntry delta = *it;
      delta.max_txid = headers.max_txid(delta);
      if (delta.max_txid > target_txid) continue;
      const uint64_t commit_ms = headers.get(delta.key).commit_time_ms;
      if (target_time_ms && commit_ms > *target_time_ms) continue;
      chain.deltas.push_back(delta);
      chain.txid = delta.max_txid;
      chain.commit_time_ms = commit_ms;
      advanced = true;
      break;
    }
    if (!advanced) break;
  }
  return chain;
}

RestorePlan plan_restore(const ReplicaListing& listing, const RestoreTarget& target, HeaderCache& headers,
                         const std::string& replica) {
  if (listing.snapshots.empty()) {
    throw Failure("replica '" + replica +
                  "' has no snapshot to restore from: run walship snapshot or replicate first");
  }
  const uint64_t target_txid = target.txid ? *target.txid : newest_txid(listing, headers);
  if (target.time_ms) {
    std::vector<std::string> keys;
    for (const SnapshotEntry& s : listing.snapshots) keys.push_back(s.key);
    headers.prefetch(keys, 8);
  }
  const SnapshotEntry* snapshot = choose_snapshot(listing, target, target_txid, headers);
  if (!snapshot) {
    const SnapshotEntry& oldest = listing.snapshots.front();
    throw Failure("no restore point at or before " + describe_target(target, target_txid) + " in replica '" +
                  replica + "': the oldest snapshot is TXID " + format::txid_hex(oldest.txid) + " at " +
                  format_rfc3339(headers.get(oldest.key).commit_time_ms) +
                  "; run walship ls to see them all");
  }

  RestorePlan plan = chain_from(listing, *snapshot, target, target_txid, headers);
  if (target.txid && plan.txid != *target.txid) {
    throw Failure("TXID " + format::txid_hex(*target.txid) + " is not a restore point of replica '" +
                  replica + "': the nearest earlier one is " + format::txid_hex(plan.txid) +
                  "; run walship ls to see them all");
  }
  return plan;
}

std::optional<RestorePlan> plan_partial(const ReplicaListing& listing, uint64_t target_txid,
                                        HeaderCache& headers) {
  RestoreTarget target;
  target.txid = target_txid;
  const SnapshotEntry* snapshot = choose_snapshot(listing, target, target_txid, headers);
  if (!snapshot) return std::nullopt;
  return chain_from(listing, *snapshot, target, target_txid, headers);
}

}  // namespace walship
