#include "lib/replica/retention.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>

namespace walship {

namespace {

constexpr int64_t k_minute_ms = 60'000;
constexpr int64_t k_hour_ms = 3'600'000;
constexpr int64_t k_day_ms = 86'400'000;

struct Civil {
  int year;
  unsigned month;
  unsigned day;
};

Civil civil_of_day(int64_t day) {
  const std::chrono::year_month_day ymd{std::chrono::sys_days{std::chrono::days{day}}};
  return {static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day())};
}

int64_t day_of(const Civil& c) {
  return std::chrono::sys_days{std::chrono::year{c.year} / std::chrono::month{c.month} /
                               std::chrono::day{c.day}}
      .time_since_epoch()
      .count();
}

std::string two(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02u", v);
  return buf;
}

std::string day_label(int64_t day) {
  const Civil c = civil_of_day(day);
  return std::to_string(c.year) + "-" + two(c.month) + "-" + two(c.day);
}

// A calendar bucket: an id that orders and compares buckets, and a label.
struct Bucket {
  int64_t id = 0;
  std::string label;
};

enum class Unit { minute, hour, day, week, month };

Bucket bucket_of(Unit unit, uint64_t time_ms) {
  const auto ms = static_cast<int64_t>(time_ms);
  const int64_t day = ms / k_day_ms;
  switch (unit) {
    case Unit::minute: {
      const int64_t in_day = ms % k_day_ms;
      return {ms / k_minute_ms, day_label(day) + "T" + two(static_cast<unsigned>(in_day / k_hour_ms)) + ":" +
                                    two(static_cast<unsigned>(in_day / k_minute_ms % 60))};
    }
    case Unit::hour:
      return {ms / k_hour_ms, day_label(day) + "T" + two(static_cast<unsigned>(ms % k_day_ms / k_hour_ms))};
    case Unit::day: return {day, day_label(day)};
    case Unit::week: {
      // ISO 8601: weeks start on Monday; a week belongs to the year of its
      // Thursday. 1970-01-01 was a Thursday.
      const int64_t weekday = (day + 3) % 7;  // 0 = Monday
      const int64_t monday = day - weekday;
      const int64_t thursday = monday + 3;
      const Civil c = civil_of_day(thursday);
      const int64_t week = (thursday - day_of({c.year, 1, 1})) / 7 + 1;
      return {monday, std::to_string(c.year) + "-W" + two(static_cast<unsigned>(week))};
    }
    case Unit::month: {
      const Civil c = civil_of_day(day);
      return {int64_t{c.year} * 12 + c.month, std::to_string(c.year) + "-" + two(c.month)};
    }
  }
  return {};
}

std::string duration_text(int64_t ms) {
  if (ms % k_day_ms == 0) return std::to_string(ms / k_day_ms) + "d";
  if (ms % k_hour_ms == 0) return std::to_string(ms / k_hour_ms) + "h";
  if (ms % k_minute_ms == 0) return std::to_string(ms / k_minute_ms) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

struct BucketRule {
  Unit unit;
  const char* name;
  int count;
  bool started = false;
  int64_t last = 0;
};

}  // namespace

RetentionPolicy default_retention_policy() {
  RetentionPolicy p;
  p.keep_within_ms = k_hour_ms;
  p.keep_minutely = 60;
  p.keep_hourly = 24;
  p.keep_daily = 7;
  p.keep_weekly = 4;
  p.keep_monthly = 6;
  return p;
}

std::string describe_policy(const RetentionPolicy& p) {
  std::string out;
  auto add = [&out](const std::string& rule) { out += (out.empty() ? "" : ", ") + rule; };
  if (p.keep_within_ms > 0) add("keep-within " + duration_text(p.keep_within_ms));
  if (p.keep_minutely > 0) add("keep-minutely " + std::to_string(p.keep_minutely));
  if (p.keep_hourly > 0) add("keep-hourly " + std::to_string(p.keep_hourly));
  if (p.keep_daily > 0) add("keep-daily " + std::to_string(p.keep_daily));
  if (p.keep_weekly > 0) add("keep-weekly " + std::to_string(p.keep_weekly));
  if (p.keep_monthly > 0) add("keep-monthly " + std::to_string(p.keep_monthly));
  if (p.keep_last > 0) add("keep-last " + std::to_string(p.keep_last));
  return out.empty() ? "no rules" : out;
}

RetentionDecision apply_policy(std::vector<RetentionPoint> points, const RetentionPolicy& policy) {
  std::sort(points.begin(), points.end(),
            [](const RetentionPoint& a, const RetentionPoint& b) { return a.txid > b.txid; });
  assert(
      std::adjacent_find(points.begin(), points.end(), [](const RetentionPoint& a, const RetentionPoint& b) {
        return a.txid == b.txid;
      }) == points.end());
  RetentionDecision decision;
  if (points.empty()) return decision;

  BucketRule rules[] = {{Unit::minute, "minutely", policy.keep_minutely},
                        {Unit::hour, "hourly", policy.keep_hourly},
                        {Unit::day, "daily", policy.keep_daily},
                        {Unit::week, "weekly", policy.keep_weekly},
                        {Unit::month, "monthly", policy.keep_monthly}};
  const uint64_t newest_ms = points.front().time_ms;
  const uint64_t within_from =
      policy.keep_within_ms > 0 && newest_ms > static_cast<uint64_t>(policy.keep_within_ms)
          ? newest_ms - static_cast<uint64_t>(policy.keep_within_ms)
          : 0;
  int snapshots_seen = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    const RetentionPoint& point = points[i];
    const bool oldest = i + 1 == points.size();
    std::vector<std::string> reasons;
    if (i == 0) reasons.push_back("newest");
    if (policy.keep_within_ms > 0 && point.time_ms >= within_from) {
      reasons.push_back("within " + duration_text(policy.keep_within_ms));
    }
    if (point.snapshot && ++snapshots_seen <= policy.keep_last) {
      reasons.push_back("last snapshot " + std::to_string(snapshots_seen));
    }
    for (BucketRule& rule : rules) {
      if (rule.count <= 0) continue;
      const Bucket bucket = bucket_of(rule.unit, point.time_ms);
      if (!rule.started || bucket.id != rule.last) {
        rule.started = true;
        rule.last = bucket.id;
        --rule.count;
        reasons.push_back(std::string(rule.name) + " " + bucket.label);
      } else if (oldest) {
        // restic: buckets left over keep the oldest point, so the history
        // reaches as far back as the policy asks even when it is short.
        --rule.count;
        reasons.push_back(std::string("oldest (") + rule.name + ")");
      }
    }
    if (reasons.empty()) {
      decision.remove.push_back(point);
    } else {
      decision.keep.push_back(point);
      decision.reasons[point.txid] = std::move(reasons);
    }
  }
  return decision;
}

}  // namespace walship
