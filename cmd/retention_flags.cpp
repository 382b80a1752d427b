#include "cmd/retention_flags.h"

#include "lib/config/config.h"
#include "lib/util/error.h"

namespace walship::cmd {

std::vector<CLI::Option*> add_retention_flags(CLI::App& sub, RetentionFlags& flags) {
  const auto count = CLI::Range(1, 0x7fffffff);
  return {
      sub.add_option("--keep-within", flags.keep_within,
                     "Keep every point within DURATION (e.g. 1h, 7d) of the newest point"),
      sub.add_option("--keep-minutely", flags.keep_minutely, "Keep the newest point of the last N minutes")
          ->check(count),
      sub.add_option("--keep-hourly", flags.keep_hourly, "Keep the newest point of the last N hours")
          ->check(count),
      sub.add_option("--keep-daily", flags.keep_daily, "Keep the newest point of the last N days")
          ->check(count),
      sub.add_option("--keep-weekly", flags.keep_weekly, "Keep the newest point of the last N ISO weeks")
          ->check(count),
      sub.add_option("--keep-monthly", flags.keep_monthly, "Keep the newest point of the last N months")
          ->check(count),
      sub.add_option("--keep-last", flags.keep_last, "Keep the N newest snapshots")->check(count),
  };
}

RetentionPolicy retention_policy_of(const RetentionFlags& flags) {
  RetentionPolicy p;
  if (!flags.keep_within.empty()) {
    const std::optional<int64_t> ms = parse_duration_ms(flags.keep_within);
    if (!ms || *ms <= 0) {
      throw UsageError("invalid --keep-within '" + flags.keep_within +
                       "': give a duration such as 30m, 1h or 7d");
    }
    p.keep_within_ms = *ms;
  }
  p.keep_last = flags.keep_last;
  p.keep_minutely = flags.keep_minutely;
  p.keep_hourly = flags.keep_hourly;
  p.keep_daily = flags.keep_daily;
  p.keep_weekly = flags.keep_weekly;
  p.keep_monthly = flags.keep_monthly;
  return p.empty() ? default_retention_policy() : p;
}

}  // namespace walship::cmd
