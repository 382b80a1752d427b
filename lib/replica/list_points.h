// `walship ls URL`: the restore points of a replica, newest first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/storage.h"

namespace walship {

struct RestorePoint {
  uint64_t txid = 0;
  uint64_t commit_time_ms = 0;
  std::string kind;   // "snapshot", or "L0".."L3" for the delta that ends at this TXID
  uint64_t size = 0;  // bytes of that object
  std::string key;
};

// One LIST plus one small header read per object (parallel). One row per
// TXID; a snapshot wins over a delta ending at the same TXID.
std::vector<RestorePoint> list_restore_points(Storage& storage, int parallelism);

// A table for people and JSON for scripts (`walship ls URL --json | jq`).
std::string render_points_table(const std::vector<RestorePoint>& points);
std::string render_points_json(const std::vector<RestorePoint>& points);

}  // namespace walship
