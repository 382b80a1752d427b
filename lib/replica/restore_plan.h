// Restore planning (DESIGN.md, "Restore"): from one LIST, the newest snapshot
// at or before the target, then the fewest deltas (highest levels first) that
// chain to the target TXID or time. Pure apart from the header reads it asks
// the HeaderCache for, so tests plan without storage.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/replica/replica_listing.h"

namespace walship {

// Neither field set: the latest restore point.
struct RestoreTarget {
  std::optional<uint64_t> txid;
  std::optional<uint64_t> time_ms;
};

struct RestorePlan {
  SnapshotEntry snapshot;
  std::vector<DeltaEntry> deltas;  // in apply order, max_txid filled in
  uint64_t txid = 0;               // the TXID the restore reaches
  uint64_t commit_time_ms = 0;     // commit time of that TXID
};

// The fewest deltas (highest levels first) that chain from `from_txid` towards
// `target_txid` without passing it, or a restore point later than
// `target_time_ms` when set; empty when no delta starts at from_txid + 1.
struct DeltaChain {
  std::vector<DeltaEntry> deltas;  // in apply order, max_txid filled in
  uint64_t txid = 0;               // the TXID the chain reaches (from_txid if empty)
  uint64_t commit_time_ms = 0;     // its commit time (0 if empty)
};
DeltaChain chain_deltas(const ReplicaListing& listing, uint64_t from_txid, uint64_t target_txid,
                        std::optional<uint64_t> target_time_ms, HeaderCache& headers);

// Throws Failure naming the target when no kept restore point matches it.
// `replica` is the (redacted) URL for messages.
RestorePlan plan_restore(const ReplicaListing& listing, const RestoreTarget& target, HeaderCache& headers,
                         const std::string& replica);

// The chain plan_restore would take toward `target_txid`, as far as it
// reaches (plan.txid <= target_txid), without the errors: for verify, which
// wants to know where a chain stops. nullopt when no snapshot is at or
// before the target. Header read failures still throw.
std::optional<RestorePlan> plan_partial(const ReplicaListing& listing, uint64_t target_txid,
                                        HeaderCache& headers);

}  // namespace walship
