// `walship prune URL` and the retention `replicate` runs on an interval
// (DESIGN.md, "Retention"): apply a RetentionPolicy to the replica's restore
// points, then delete every object no kept point's restore chain uses.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lib/replica/replica_listing.h"
#include "lib/replica/retention.h"
#include "lib/storage/storage.h"

namespace walship {

struct PruneObject {
  std::string key;
  uint64_t size = 0;
  uint64_t end_txid = 0;  // the restore point the object ends at
  std::string why;        // for people: why it stays or goes
};

struct PrunePlan {
  RetentionDecision points;         // the restore points kept and removed, with reasons
  std::vector<PruneObject> keep;    // ascending key
  std::vector<PruneObject> remove;  // in deletion order (see plan_prune)
  uint64_t keep_bytes = 0;
  uint64_t remove_bytes = 0;
};

// Pure apart from the header reads it asks `headers` for. The restore
// points are the TXIDs objects end at that plan_restore reaches; the policy
// picks the kept ones; the kept objects are the union of the restore plans
// of the kept points; every other object is removed. Throws Failure, and
// plans nothing, when some object's end point cannot be planned (a broken
// chain: run verify first) so a prune never deletes around damage it does
// not understand. `replica` names the replica in messages.
PrunePlan plan_prune(const ReplicaListing& listing, HeaderCache& headers, const RetentionPolicy& policy,
                     const std::string& replica);

struct PruneOptions {
  RetentionPolicy policy = default_retention_policy();
  bool dry_run = false;  // plan and report, delete nothing
  int parallelism = 8;   // header reads in flight
  // Prune only when this says yes to the replica's newest TXID (asked once,
  // after the listing): the replicator thins only a chain whose tip it
  // holds (no other writer extends it). Empty: whatever the newest TXID.
  std::function<bool(uint64_t newest)> only_if_newest;
  // Headers already known (the replicator's, of what it wrote): fetched
  // into it when missing. Null: every header is fetched.
  HeaderCache* headers = nullptr;
  // When given and set, no further object is deleted (the replicator stops).
  const std::atomic<bool>* stop = nullptr;
  // Called after each object deleted (the replicator counts them).
  std::function<void(const PruneObject&)> on_deleted;
};

struct PruneResult {
  PrunePlan plan;
  size_t deleted = 0;    // objects deleted (0 on a dry run)
  uint64_t newest = 0;   // the replica's newest TXID
  bool skipped = false;  // only_if_newest said no: nothing planned or deleted
};

// The one prune routine, of `walship prune` and of the replicator's
// retention: one LIST, one header read per object, plan_prune, then
// deletions one object at a time in plan order. Safe to kill at any moment
// (see prune.cpp). Logs nothing; throws UsageError for an empty policy and
// Failure for an empty replica or one plan_prune refuses.
PruneResult prune_replica(const PruneOptions& options, Storage& storage);

// prune_replica(), then one log line saying what went.
PruneResult run_prune(const PruneOptions& options, Storage& storage);

// What --dry-run prints (and, past tense, what a real run prints): the
// policy, a summary, each object deleted and why, and each restore point
// kept or removed and why.
std::string render_prune(const PruneResult& result, const RetentionPolicy& policy, bool dry_run,
                         bool verbose);

}  // namespace walship
