#include "lib/replica/list_points.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "lib/format/keys.h"
#include "lib/replica/restore_plan.h"
#include "lib/util/error.h"
#include "lib/util/progress.h"
#include "lib/util/time.h"

namespace walship {

std::vector<RestorePoint> list_restore_points(Storage& storage, int parallelism) {
  const ReplicaListing listing = list_replica(storage);
  HeaderCache headers(storage);
  return list_restore_points(listing, headers, parallelism);
}

std::vector<RestorePoint> list_restore_points(const ReplicaListing& listing, HeaderCache& headers,
                                              int parallelism) {
  std::vector<std::string> keys;
  for (const SnapshotEntry& s : listing.snapshots) keys.push_back(s.key);
  for (const DeltaEntry& d : listing.deltas) keys.push_back(d.key);
  headers.prefetch(keys, parallelism);

  std::map<uint64_t, RestorePoint> by_txid;
  for (const DeltaEntry& d : listing.deltas) {
    const format::FileHeader& header = headers.get(d.key);
    RestorePoint point{header.max_txid, header.commit_time_ms, "L" + std::to_string(d.level), d.size, d.key};
    auto [it, inserted] = by_txid.emplace(point.txid, point);
    if (!inserted && it->second.kind != "snapshot" && it->second.kind < point.kind) it->second = point;
  }
  for (const SnapshotEntry& s : listing.snapshots) {
    by_txid[s.txid] = RestorePoint{s.txid, headers.get(s.key).commit_time_ms, "snapshot", s.size, s.key};
  }
  std::vector<RestorePoint> points;
  for (auto it = by_txid.rbegin(); it != by_txid.rend(); ++it) points.push_back(it->second);
  return points;
}

std::vector<RestorePoint> filter_points(const std::vector<RestorePoint>& points, const PointFilter& filter) {
  std::vector<RestorePoint> shown;
  for (const RestorePoint& p : points) {
    if (filter.since_ms && p.commit_time_ms < *filter.since_ms) continue;
    if (filter.until_ms && p.commit_time_ms > *filter.until_ms) continue;
    if (filter.last && shown.size() >= *filter.last) break;
    shown.push_back(p);
  }
  return shown;
}

void add_restore_costs(std::vector<RestorePoint>& points, const ReplicaListing& listing,
                       HeaderCache& headers) {
  for (RestorePoint& p : points) {
    try {
      const RestorePlan plan = plan_restore(listing, RestoreTarget{p.txid, std::nullopt}, headers, "");
      p.fetch_objects = 1 + plan.deltas.size();
      p.fetch_bytes = plan.snapshot.size;
      for (const DeltaEntry& d : plan.deltas) p.fetch_bytes += d.size;
    } catch (const Failure&) {
      p.fetch_objects = 0;  // not restorable: no snapshot before it, or a gap in the chain
      p.fetch_bytes = 0;
    }
  }
}

PointReport report_points(Storage& storage, const PointFilter& filter, int parallelism) {
  const ReplicaListing listing = list_replica(storage);
  if (listing.empty()) {
    throw Failure("no replica at '" + storage.url() + "' (nothing found there): check the URL");
  }
  HeaderCache headers(storage);
  const std::vector<RestorePoint> all = list_restore_points(listing, headers, parallelism);
  PointReport report;
  report.points = filter_points(all, filter);
  add_restore_costs(report.points, listing, headers);
  report.total_points = all.size();
  for (const SnapshotEntry& s : listing.snapshots) report.bytes += s.size;
  for (const DeltaEntry& d : listing.deltas) report.bytes += d.size;
  report.objects = listing.snapshots.size() + listing.deltas.size();
  return report;
}

namespace {

std::string fetch_text(const RestorePoint& p) {
  if (p.fetch_objects == 0) return "not restorable (run walship verify)";
  return std::to_string(p.fetch_objects) + (p.fetch_objects == 1 ? " object, " : " objects, ") +
         human_bytes(p.fetch_bytes);
}

}  // namespace

std::string render_points_table(const PointReport& report, bool verbose) {
  std::string out =
      verbose ? "TXID              TIME (UTC)                RESTORE FETCHES             OBJECT    SIZE\n"
              : "TXID              TIME (UTC)                RESTORE FETCHES\n";
  for (const RestorePoint& p : report.points) {
    char line[200];
    if (verbose) {
      std::snprintf(line, sizeof line, "%-17s %-25s %-27s %-9s %s\n", format::txid_hex(p.txid).c_str(),
                    format_rfc3339(p.commit_time_ms).c_str(), fetch_text(p).c_str(), p.kind.c_str(),
                    human_bytes(p.size).c_str());
    } else {
      std::snprintf(line, sizeof line, "%-17s %-25s %s\n", format::txid_hex(p.txid).c_str(),
                    format_rfc3339(p.commit_time_ms).c_str(), fetch_text(p).c_str());
    }
    out += line;
  }
  const size_t n = report.points.size();
  out += std::to_string(n) + (n == 1 ? " restore point" : " restore points");
  if (n < report.total_points) out += " shown of " + std::to_string(report.total_points);
  if (n > 0) {
    out += ", " + format_rfc3339(report.points.back().commit_time_ms) + " to " +
           format_rfc3339(report.points.front().commit_time_ms);
  }
  out += "; the replica holds " + std::to_string(report.objects) +
         (report.objects == 1 ? " object, " : " objects, ") + human_bytes(report.bytes) + "\n";
  return out;
}

std::string render_points_json(const std::vector<RestorePoint>& points) {
  nlohmann::json array = nlohmann::json::array();
  for (const RestorePoint& p : points) {
    array.push_back({{"txid", format::txid_hex(p.txid)},
                     {"time", format_rfc3339(p.commit_time_ms)},
                     {"kind", p.kind},
                     {"size", p.size},
                     {"key", p.key},
                     {"restorable", p.fetch_objects > 0},
                     {"fetch_objects", p.fetch_objects},
                     {"fetch_bytes", p.fetch_bytes}});
  }
  return array.dump(2) + "\n";
}

}  // namespace walship
