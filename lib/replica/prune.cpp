#include "lib/replica/prune.h"

#include <algorithm>
#include <set>

#include "lib/format/keys.h"
#include "lib/replica/restore_plan.h"
#include "lib/util/log.h"
#include "lib/util/progress.h"
#include "lib/util/time.h"

// Why a prune killed at any moment never leaves a kept point unrestorable.
//
// 1. Prune deletes only objects that no kept point's restore plan uses. So
//    after ANY subset of the deletions (any prefix, in any order), every
//    object of every kept point's plan is still there: order is irrelevant
//    for the kept points.
// 2. restore plans the same chain again on what is left. plan_restore takes
//    the newest snapshot at or before the target (deleting never adds a
//    newer one, and the plan's own snapshot stays), then at each step the
//    highest-level delta that starts right after the current TXID and does
//    not pass the target. The delta it took before is still there, and
//    every delta it could prefer was there before and was passed over for
//    a reason deleting others does not change. So it takes the same chain.
// 3. The newest point is always kept, so the writer's tip and the snapshot
//    its chain starts from are never deleted, and a replicator continuing
//    the chain never finds its predecessor gone.
//
// The order below only makes an interrupted prune tidy for the points being
// removed: objects go newest end point first (at equal end points higher
// levels first, the snapshot last). When an object goes, every object that
// ends before it is still there, so every object left still ends at a point
// restore reaches: a killed prune leaves no orphan delta for verify to
// report, and the next prune simply finishes the job (the policy keeps the
// same points from what is left; see test_replica_retention). Higher levels
// go first because a compacted file may start before the snapshot restore
// would take for its end point: left alone after the L0 delta ending there
// went, it would claim a point nothing reaches.

namespace walship {

namespace {

struct Candidate {
  uint64_t time_ms = 0;
  bool snapshot = false;
  bool timed = false;
};

// Deletion rank at equal end points: L3 first, L0 last of the deltas, then the snapshot.
int level_rank(const std::string& key) {
  const auto info = format::parse_key(key);
  if (!info || info->kind == format::ObjectKind::snapshot) return 4;
  return 3 - info->level;
}

// The kill-safe deletion order (see the top of this file): newest end
// point first, at equal end points higher levels first, the snapshot last.
void sort_for_deletion(std::vector<PruneObject>& objects) {
  std::sort(objects.begin(), objects.end(), [](const PruneObject& a, const PruneObject& b) {
    if (a.end_txid != b.end_txid) return a.end_txid > b.end_txid;
    const int ra = level_rank(a.key);
    const int rb = level_rank(b.key);
    return ra != rb ? ra < rb : a.key < b.key;
  });
}

}  // namespace

PrunePlan plan_prune(const ReplicaListing& listing, HeaderCache& headers, const RetentionPolicy& policy,
                     const std::string& replica) {
  PrunePlan plan;
  if (listing.empty() && listing.superseded.empty()) return plan;

  // Every object, with the point it ends at.
  std::vector<PruneObject> objects;
  std::map<uint64_t, Candidate> candidates;
  auto note = [&candidates](uint64_t txid, uint64_t time_ms, bool snapshot) {
    Candidate& c = candidates[txid];
    c.time_ms = c.timed ? std::min(c.time_ms, time_ms) : time_ms;
    c.timed = true;
    c.snapshot = c.snapshot || snapshot;
  };
  for (const SnapshotEntry& s : listing.snapshots) {
    objects.push_back({s.key, s.size, s.txid, ""});
    note(s.txid, headers.get(s.key).commit_time_ms, true);
  }
  for (const DeltaEntry& d : listing.deltas) {
    const uint64_t end = headers.max_txid(d);
    objects.push_back({d.key, d.size, end, ""});
    note(end, headers.get(d.key).commit_time_ms, false);
  }

  // Restore points: the end points restore can plan. An end point it cannot
  // reach means a gap or a broken chain; deleting around it could throw
  // away the only copy of data someone will want to rescue.
  std::map<uint64_t, RestorePlan> plans;
  std::vector<RetentionPoint> points;
  for (const auto& [txid, c] : candidates) {
    RestoreTarget target;
    target.txid = txid;
    try {
      plans.emplace(txid, plan_restore(listing, target, headers, replica));
    } catch (const Failure& e) {
      throw Failure("replica '" + replica + "' has an object ending at TXID " + format::txid_hex(txid) +
                    " that no restore can reach (" + e.what() +
                    "): prune deletes nothing from a damaged replica; run walship verify");
    }
    points.push_back({txid, c.time_ms, c.snapshot});
  }
  plan.points = apply_policy(points, policy);

  // Objects the kept points need: the union of their plans.
  std::map<std::string, std::pair<size_t, uint64_t>> needed;  // key -> (kept points, newest of them)
  for (const RetentionPoint& p : plan.points.keep) {
    const RestorePlan& restore = plans.at(p.txid);
    auto use = [&](const std::string& key) {
      auto& [count, newest] = needed[key];
      ++count;
      newest = std::max(newest, p.txid);
    };
    use(restore.snapshot.key);
    for (const DeltaEntry& d : restore.deltas) use(d.key);
  }
  std::set<uint64_t> kept_points;
  for (const RetentionPoint& p : plan.points.keep) kept_points.insert(p.txid);

  for (PruneObject& o : objects) {
    const auto it = needed.find(o.key);
    if (it != needed.end()) {
      o.why = "needed by " + std::to_string(it->second.first) + " kept point" +
              (it->second.first == 1 ? "" : "s") + " (newest " + format::txid_hex(it->second.second) + ")";
      plan.keep_bytes += o.size;
      plan.keep.push_back(o);
    } else {
      o.why = kept_points.count(o.end_txid)
                  ? "kept point " + format::txid_hex(o.end_txid) + " restores through other objects"
                  : "ends at removed point " + format::txid_hex(o.end_txid) + "; no kept point needs it";
      plan.remove_bytes += o.size;
      plan.remove.push_back(o);
    }
  }
  for (const SupersededEntry& o : listing.superseded) {
    plan.remove_bytes += o.size;
    plan.remove.push_back({o.key, o.size, o.min_txid,
                           "written by a fenced writer after the takeover at TXID " +
                               format::txid_hex(o.fence.after) + "; no point uses it"});
  }
  std::sort(plan.keep.begin(), plan.keep.end(),
            [](const PruneObject& a, const PruneObject& b) { return a.key < b.key; });
  sort_for_deletion(plan.remove);
  return plan;
}

PruneResult prune_replica(const PruneOptions& options, Storage& storage) {
  if (options.policy.empty()) {
    throw UsageError(
        "no retention rule given: pass at least one --keep-* option (or none for the default policy)");
  }
  PruneResult result;
  const ReplicaListing listing = list_replica(storage);
  HeaderCache own(storage);
  HeaderCache& headers = options.headers ? *options.headers : own;
  std::vector<std::string> keys;
  for (const SnapshotEntry& s : listing.snapshots) keys.push_back(s.key);
  for (const DeltaEntry& d : listing.deltas) keys.push_back(d.key);
  headers.prefetch(keys, options.parallelism);
  if (options.only_if_newest) {
    result.newest = newest_txid(listing, headers);
    result.skipped = !options.only_if_newest(result.newest);
    if (result.skipped) return result;
  }
  if (listing.empty()) {
    throw Failure("no replica at '" + storage.url() + "' (nothing found there): check the URL");
  }
  result.plan = plan_prune(listing, headers, options.policy, storage.url());
  if (options.dry_run) return result;
  // One object per call, in plan order: a batch delete may apply in any
  // order, and the order is what keeps an interrupted prune tidy.
  for (const PruneObject& o : result.plan.remove) {
    if (options.stop && *options.stop) break;
    storage.remove({o.key});
    ++result.deleted;
    if (options.on_deleted) options.on_deleted(o);
  }
  return result;
}

PruneResult run_prune(const PruneOptions& options, Storage& storage) {
  PruneResult result = prune_replica(options, storage);
  if (!options.dry_run && log_enabled(LogLevel::info)) {
    log(LogLevel::info, "pruned",
        {{"replica", storage.url()},
         {"points_kept", result.plan.points.keep.size()},
         {"points_removed", result.plan.points.remove.size()},
         {"objects_deleted", result.deleted},
         {"bytes_deleted", result.plan.remove_bytes}});
  }
  return result;
}

std::string render_prune(const PruneResult& result, const RetentionPolicy& policy, bool dry_run,
                         bool verbose) {
  const PrunePlan& plan = result.plan;
  std::string out;
  out += "policy          " + describe_policy(policy) + "\n";
  out += "restore points  " + std::to_string(plan.points.keep.size()) + " kept, " +
         std::to_string(plan.points.remove.size()) + " removed\n";
  out += "objects         " + std::to_string(plan.keep.size()) + " kept (" + human_bytes(plan.keep_bytes) +
         "), " + std::to_string(plan.remove.size()) + (dry_run ? " to delete (" : " deleted (") +
         human_bytes(plan.remove_bytes) + ")\n";
  if (!plan.remove.empty()) out += "\n";
  for (const PruneObject& o : plan.remove) {
    out += std::string(dry_run ? "would delete " : "deleted ") + o.key + "  (" + o.why + ")\n";
  }
  if (dry_run || verbose) {
    out += "\n";
    std::vector<std::pair<RetentionPoint, bool>> all;
    for (const RetentionPoint& p : plan.points.keep) all.emplace_back(p, true);
    for (const RetentionPoint& p : plan.points.remove) all.emplace_back(p, false);
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return a.first.txid > b.first.txid; });
    for (const auto& [p, kept] : all) {
      out += std::string(kept ? "keep   " : "remove ") + "point " + format::txid_hex(p.txid) + " " +
             format_rfc3339(p.time_ms) + (p.snapshot ? " snapshot" : "");
      if (kept) {
        std::string reasons;
        for (const std::string& r : plan.points.reasons.at(p.txid))
          reasons += (reasons.empty() ? "" : ", ") + r;
        out += "  (" + reasons + ")";
      }
      out += "\n";
    }
  }
  return out;
}

}  // namespace walship
