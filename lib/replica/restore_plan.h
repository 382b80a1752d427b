// Restore planning (DESIGN.md, "Restore"): from one LIST, the newest snapshot
// at or before the target, then the fewest deltas (highest levels first) that
// chain to the target TXID or time. Pure apart from the header reads it asks
// the HeaderCache for, so tests plan without storage.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lib/replica/replica_listing.h"

namespace walship {

// Neither field set: the latest restore point.
struct RestoreTarget {
  std::optional<uint64_t> txid;
  std::optional<uint64_t> time_ms;
  // The latest point only: when no path reaches the replica's newest TXID,
  // plan the newest reachable one instead of failing (--allow-older).
  bool allow_older = false;
};

struct RestorePlan {
  SnapshotEntry snapshot;
  std::vector<DeltaEntry> deltas;  // in apply order, max_txid filled in
  uint64_t txid = 0;               // the TXID the restore reaches
  uint64_t commit_time_ms = 0;     // commit time of that TXID
  uint64_t newest_txid = 0;        // the latest target: the replica's newest (> txid with allow_older)
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

// The fewest bytes of deltas that take a database at `from_txid` (a local
// copy: restore --delta) exactly to `target_txid`; nullopt when none does.
// Unlike a chain from a snapshot, the first delta may start before
// from_txid + 1 and end after it (a merged file whose range holds the point,
// after compaction and prune removed the L0 deltas): every page it changed
// up to from_txid already holds that content, so applying it whole is right,
// and the result is proven by its trailer's checksum, not by its
// checksum-before. from_txid >= target_txid: nullopt.
std::optional<DeltaChain> chain_from_point(const ReplicaListing& listing, uint64_t from_txid,
                                           uint64_t target_txid, HeaderCache& headers);

// The latest restore point is not reachable: every path to the replica's
// newest TXID needs a missing or broken object.
class UnreachableNewestError : public Failure {
 public:
  using Failure::Failure;
};

// The newest TXID the replica's objects claim: newest_txid of those not in
// `excluded`, and for each excluded (bad) one whose header decodes and names
// the TXIDs its key does, the last of them: such an object was written and
// its body broke, so those TXIDs are lost. Junk under a TXID's key (its
// header does not decode) or a stray copy (its header names other TXIDs)
// claims nothing: the latest restore goes around it, and verify reports it.
uint64_t claimed_newest_txid(const ReplicaListing& listing, const std::set<std::string>& excluded,
                             HeaderCache& headers);

// Plans over `listing` without the `excluded` (bad) objects. Throws Failure
// naming the target when no kept restore point matches it. For the latest
// point, when the newest snapshot's chain falls short of the replica's newest
// TXID (claimed_newest_txid), older snapshots are tried; when none reaches
// it, throws UnreachableNewestError naming both TXIDs and the broken or
// missing objects, unless target.allow_older (then the newest reachable).
// `replica` is the (redacted) URL for messages.
RestorePlan plan_restore(const ReplicaListing& listing, const RestoreTarget& target, HeaderCache& headers,
                         const std::string& replica, const std::set<std::string>& excluded = {});

// The chain plan_restore would take toward `target_txid`, as far as it
// reaches (plan.txid <= target_txid), without the errors: for verify, which
// wants to know where a chain stops. nullopt when no snapshot is at or
// before the target. Header read failures still throw.
std::optional<RestorePlan> plan_partial(const ReplicaListing& listing, uint64_t target_txid,
                                        HeaderCache& headers);

}  // namespace walship
