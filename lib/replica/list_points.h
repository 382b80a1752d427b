// `walship ls URL`: the restore points of a replica, newest first, what
// restoring each one fetches, and the filters (--last, --since, --until).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/replica/replica_listing.h"
#include "lib/storage/storage.h"

namespace walship {

struct RestorePoint {
  uint64_t txid = 0;
  uint64_t commit_time_ms = 0;
  std::string kind;   // "snapshot", or "L0".."L3" for the delta that ends at this TXID
  uint64_t size = 0;  // bytes of that object
  std::string key;
  // What a restore of this point downloads (the snapshot and the deltas
  // chained onto it); fetch_objects == 0: not restorable (broken chain), or
  // not computed.
  size_t fetch_objects = 0;
  uint64_t fetch_bytes = 0;
};

// One LIST plus one small header read per object (parallel). One row per
// TXID; a snapshot wins over a delta ending at the same TXID.
std::vector<RestorePoint> list_restore_points(Storage& storage, int parallelism);
std::vector<RestorePoint> list_restore_points(const ReplicaListing& listing, HeaderCache& headers,
                                              int parallelism);

// Which points `ls` shows: those committed in [since_ms, until_ms], then the
// `last` newest of them.
struct PointFilter {
  std::optional<uint64_t> since_ms;
  std::optional<uint64_t> until_ms;
  std::optional<size_t> last;
};

// Pure: `points` newest first, as list_restore_points gives them.
std::vector<RestorePoint> filter_points(const std::vector<RestorePoint>& points, const PointFilter& filter);

// Fills fetch_objects and fetch_bytes of each point from its restore plan
// (pure apart from the header reads; a point whose chain is broken keeps 0).
void add_restore_costs(std::vector<RestorePoint>& points, const ReplicaListing& listing,
                       HeaderCache& headers);

// What `ls` prints: the shown points and the replica they came from.
struct PointReport {
  std::vector<RestorePoint> points;  // shown, newest first
  size_t total_points = 0;           // in the replica
  size_t objects = 0;                // in the replica
  uint64_t bytes = 0;                // in the replica
};

// One LIST, the headers, the filter and the restore costs of the shown
// points. Throws Failure "no replica at URL" when nothing is there, so a
// typo in a prefix is not mistaken for a replica without points.
PointReport report_points(Storage& storage, const PointFilter& filter, int parallelism);

// A table for people (the object kind and size with `verbose`), ending with a
// summary line, and JSON for scripts (`walship ls URL --json | jq`).
std::string render_points_table(const PointReport& report, bool verbose);
std::string render_points_json(const std::vector<RestorePoint>& points);

}  // namespace walship
