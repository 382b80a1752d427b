#include "lib/replica/restore_plan.h"

#include <algorithm>
#include <optional>

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

// The plan to a TXID (the latest point's: `newest`): from the newest
// snapshot, else (its chain falls short of `newest`) from older snapshots in
// turn, newest first, until one reaches `newest`. Only a replica with a gap pays for the extra header
// reads. The plan reaching furthest wins; on a tie, the newer snapshot's.
RestorePlan furthest_plan(const ReplicaListing& listing, const SnapshotEntry& newest_snapshot,
                          const RestoreTarget& target, uint64_t newest, HeaderCache& headers) {
  RestorePlan best = chain_from(listing, newest_snapshot, target, newest, headers);
  for (auto it = listing.snapshots.rbegin(); it != listing.snapshots.rend() && best.txid < newest; ++it) {
    if (it->txid >= newest_snapshot.txid) continue;
    RestorePlan plan = chain_from(listing, *it, target, newest, headers);
    if (plan.txid > best.txid) best = std::move(plan);
  }
  return best;
}

// The last TXID a bad object claims (see claimed_newest_txid): nullopt for
// junk or a stray copy, whose header does not decode or names other TXIDs.
std::optional<uint64_t> claimed_txid(const std::string& key, HeaderCache& headers) {
  try {
    return headers.get(key).max_txid;
  } catch (const BadObjectError&) {
    return std::nullopt;
  }
}

// Why no path goes past `reached`: the excluded (broken) objects whose keys
// name a later TXID, else the missing delta right after it.
std::string describe_gap(const ReplicaListing& listing, const std::set<std::string>& excluded,
                         uint64_t reached, HeaderCache& headers) {
  std::vector<std::string> broken;
  for (const SnapshotEntry& s : listing.snapshots) {
    if (s.txid > reached && excluded.contains(s.key)) broken.push_back(s.key);
  }
  for (const DeltaEntry& d : listing.deltas) {
    if (!excluded.contains(d.key)) continue;
    if (d.min_txid > reached || claimed_txid(d.key, headers).value_or(0) > reached) broken.push_back(d.key);
  }
  if (broken.empty()) return "no delta starts at TXID " + format::txid_hex(reached + 1) + " (missing)";
  constexpr size_t k_named = 3;
  std::string text;
  for (size_t i = 0; i < broken.size() && i < k_named; ++i) text += (i ? ", " : "") + broken[i];
  if (broken.size() > k_named) text += " and " + std::to_string(broken.size() - k_named) + " more";
  return text + (broken.size() == 1 ? " is broken" : " are broken");
}

UnreachableNewestError unreachable_newest(const ReplicaListing& listing,
                                          const std::set<std::string>& excluded, const RestorePlan& plan,
                                          const std::string& replica, HeaderCache& headers) {
  const uint64_t newest = plan.newest_txid;
  return UnreachableNewestError("the newest TXID " + format::txid_hex(newest) + " of replica '" + replica +
                                "' is not reachable: " + describe_gap(listing, excluded, plan.txid, headers) +
                                "; the newest reachable is " + format::txid_hex(plan.txid) + " (" +
                                format_rfc3339(plan.commit_time_ms) +
                                "): pass --allow-older to restore it, or run walship verify " + replica);
}

}  // namespace

uint64_t claimed_newest_txid(const ReplicaListing& listing, const std::set<std::string>& excluded,
                             HeaderCache& headers) {
  if (excluded.empty()) return newest_txid(listing, headers);
  uint64_t newest = newest_txid(exclude_objects(listing, excluded), headers);
  for (const SnapshotEntry& s : listing.snapshots) {
    if (excluded.contains(s.key)) newest = std::max(newest, claimed_txid(s.key, headers).value_or(0));
  }
  for (const DeltaEntry& d : listing.deltas) {
    if (excluded.contains(d.key)) newest = std::max(newest, claimed_txid(d.key, headers).value_or(0));
  }
  return newest;
}

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

std::optional<DeltaChain> chain_from_point(const ReplicaListing& listing, uint64_t from_txid,
                                           uint64_t target_txid, HeaderCache& headers) {
  if (from_txid >= target_txid) return std::nullopt;
  std::optional<DeltaChain> best;
  uint64_t best_bytes = 0;
  const auto consider = [&](DeltaChain chain) {
    if (chain.deltas.empty() || chain.txid != target_txid) return;
    uint64_t bytes = 0;
    for (const DeltaEntry& d : chain.deltas) bytes += d.size;
    if (!best || bytes < best_bytes || (bytes == best_bytes && chain.deltas.size() < best->deltas.size())) {
      best = std::move(chain);
      best_bytes = bytes;
    }
  };
  consider(chain_deltas(listing, from_txid, target_txid, std::nullopt, headers));
  // A first delta that holds the point inside its range (max_txid known),
  // then the chain from its end.
  const auto consider_overlapping = [&](const DeltaEntry& first) {
    if (first.max_txid <= from_txid || first.max_txid > target_txid) return;
    DeltaChain chain = chain_deltas(listing, first.max_txid, target_txid, std::nullopt, headers);
    chain.deltas.insert(chain.deltas.begin(), first);
    consider(std::move(chain));
  };
  // L0 deltas never overlap one another: only the last one starting at or
  // before the point can hold it, and it alone needs its header read.
  const DeltaEntry* last_l0 = nullptr;
  for (const DeltaEntry& d : listing.deltas) {
    if (d.min_txid > from_txid) break;
    if (d.level == 0) {
      last_l0 = &d;
    } else {
      consider_overlapping(d);
    }
  }
  if (last_l0) {
    DeltaEntry d = *last_l0;
    d.max_txid = headers.max_txid(d);
    consider_overlapping(d);
  }
  if (best) best->commit_time_ms = headers.get(best->deltas.back().key).commit_time_ms;
  return best;
}

RestorePlan plan_restore(const ReplicaListing& full, const RestoreTarget& target, HeaderCache& headers,
                         const std::string& replica, const std::set<std::string>& excluded) {
  ReplicaListing kept;
  if (!excluded.empty()) kept = exclude_objects(full, excluded);
  const ReplicaListing& listing = excluded.empty() ? full : kept;
  if (listing.snapshots.empty()) {
    if (!full.snapshots.empty()) {
      throw Failure("replica '" + replica + "' has no whole snapshot to restore from: " +
                    describe_gap(full, excluded, 0, headers) + "; run walship verify " + replica);
    }
    throw Failure("replica '" + replica +
                  "' has no snapshot to restore from: run walship snapshot or replicate first");
  }
  const bool latest = !target.txid && !target.time_ms;
  const uint64_t target_txid = target.txid ? *target.txid
                               : latest    ? claimed_newest_txid(full, excluded, headers)
                                           : newest_txid(listing, headers);
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

  // A TXID (or the latest) is reached from an older snapshot when the newer
  // one's chain is broken; a time target takes the newest snapshot's chain.
  RestorePlan plan = target.time_ms ? chain_from(listing, *snapshot, target, target_txid, headers)
                                    : furthest_plan(listing, *snapshot, target, target_txid, headers);
  if (target.txid && plan.txid != *target.txid) {
    throw Failure("TXID " + format::txid_hex(*target.txid) + " is not a restore point of replica '" +
                  replica + "': the nearest earlier one is " + format::txid_hex(plan.txid) +
                  "; run walship ls to see them all");
  }
  if (latest) {
    plan.newest_txid = target_txid;
    if (plan.txid < target_txid && !target.allow_older)
      throw unreachable_newest(full, excluded, plan, replica, headers);
  }
  return plan;
}

std::optional<RestorePlan> plan_partial(const ReplicaListing& listing, uint64_t target_txid,
                                        HeaderCache& headers) {
  RestoreTarget target;
  target.txid = target_txid;
  const SnapshotEntry* snapshot = choose_snapshot(listing, target, target_txid, headers);
  if (!snapshot) return std::nullopt;
  return furthest_plan(listing, *snapshot, target, target_txid, headers);
}

}  // namespace walship
