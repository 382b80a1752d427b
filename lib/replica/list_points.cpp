#include "lib/replica/list_points.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "lib/format/keys.h"
#include "lib/replica/replica_listing.h"
#include "lib/util/progress.h"
#include "lib/util/time.h"

namespace walship {

std::vector<RestorePoint> list_restore_points(Storage& storage, int parallelism) {
  const ReplicaListing listing = list_replica(storage);
  HeaderCache headers(storage);
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

std::string render_points_table(const std::vector<RestorePoint>& points) {
  std::string out = "TXID              TIME (UTC)                KIND      SIZE\n";
  for (const RestorePoint& p : points) {
    char line[160];
    std::snprintf(line, sizeof line, "%-17s %-25s %-9s %s\n", format::txid_hex(p.txid).c_str(),
                  format_rfc3339(p.commit_time_ms).c_str(), p.kind.c_str(), human_bytes(p.size).c_str());
    out += line;
  }
  return out;
}

std::string render_points_json(const std::vector<RestorePoint>& points) {
  nlohmann::json array = nlohmann::json::array();
  for (const RestorePoint& p : points) {
    array.push_back({{"txid", format::txid_hex(p.txid)},
                     {"time", format_rfc3339(p.commit_time_ms)},
                     {"kind", p.kind},
                     {"size", p.size},
                     {"key", p.key}});
  }
  return array.dump(2) + "\n";
}

}  // namespace walship
