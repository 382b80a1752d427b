// Retention (DESIGN.md, "Retention"): which restore points a policy keeps,
// with restic's `forget` semantics. Pure: points and a policy in, a decision
// out, so it is tested with golden files and shared by `walship prune` and
// the retention `replicate` runs on an interval.
//
// - Points are ordered by TXID (commit order), newest first.
// - keep-within D keeps every point committed at most D before the NEWEST
//   point (not before now: a writer that stopped never has its history
//   pruned away by the clock alone).
// - keep-minutely/hourly/daily/weekly/monthly N keep, for the N most recent
//   non-empty UTC calendar buckets of that size (weeks are ISO weeks,
//   starting on Monday), the newest point in the bucket. Buckets are counted
//   back from the newest point, never from now. As in restic, when fewer
//   than N buckets hold points, the oldest point is kept as well, so the
//   history reaches as far back as the policy allows.
// - keep-last N keeps the N newest snapshots (full-image points), which is
//   what a cron `walship snapshot` replica is made of.
// - A point kept by any rule is kept; the newest point is always kept.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace walship {

struct RetentionPolicy {
  int64_t keep_within_ms = 0;  // 0: rule off
  int keep_last = 0;           // snapshots; 0: rule off
  int keep_minutely = 0;
  int keep_hourly = 0;
  int keep_daily = 0;
  int keep_weekly = 0;
  int keep_monthly = 0;

  bool empty() const {
    return keep_within_ms <= 0 && keep_last <= 0 && keep_minutely <= 0 && keep_hourly <= 0 &&
           keep_daily <= 0 && keep_weekly <= 0 && keep_monthly <= 0;
  }
  bool operator==(const RetentionPolicy&) const = default;
};

// The policy README documents and `prune`/`replicate` use when none is given:
// every point of the last hour, then one a minute for an hour, one an hour
// for a day, one a day for a week, one a week for a month, one a month for
// half a year.
RetentionPolicy default_retention_policy();

// "keep-within 1h, keep-minutely 60, ..." (only the rules that are on).
std::string describe_policy(const RetentionPolicy& policy);

struct RetentionPoint {
  uint64_t txid = 0;
  uint64_t time_ms = 0;   // commit time of the TXID, ms since the epoch (UTC)
  bool snapshot = false;  // a full image (snapshot file) ends here
  bool operator==(const RetentionPoint&) const = default;
};

struct RetentionDecision {
  std::vector<RetentionPoint> keep;    // newest first
  std::vector<RetentionPoint> remove;  // newest first
  // Why each kept point is kept: "within 1h", "minutely 2026-11-20T08:05",
  // "daily 2026-11-20", "last snapshot 2", "newest", "oldest (daily)".
  std::map<uint64_t, std::vector<std::string>> reasons;
};

// Throws nothing. Points with the same TXID are a caller bug (asserted).
RetentionDecision apply_policy(std::vector<RetentionPoint> points, const RetentionPolicy& policy);

}  // namespace walship
