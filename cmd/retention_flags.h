// The --keep-* flags `prune` and `replicate` share: registered into text
// fields, turned into a RetentionPolicy once parsing is over.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "lib/replica/retention.h"

namespace walship::cmd {

struct RetentionFlags {
  std::string keep_within;
  int keep_last = 0;
  int keep_minutely = 0;
  int keep_hourly = 0;
  int keep_daily = 0;
  int keep_weekly = 0;
  int keep_monthly = 0;
};

// Adds --keep-within, --keep-minutely ... --keep-monthly and --keep-last;
// returns them so callers can add `excludes`.
std::vector<CLI::Option*> add_retention_flags(CLI::App& sub, RetentionFlags& flags);

// The policy the flags give; the default policy when none was given.
// Throws UsageError for a bad duration.
RetentionPolicy retention_policy_of(const RetentionFlags& flags);

// For --help footers: how the rules count.
inline constexpr const char* k_retention_help =
    "Retention follows restic's forget: --keep-within keeps every restore point committed within\n"
    "DURATION of the NEWEST point; --keep-minutely/hourly/daily/weekly/monthly N keep the newest\n"
    "point of each of the N most recent UTC minutes/hours/days/ISO weeks/months that have points;\n"
    "--keep-last N keeps the N newest snapshots. Everything counts back from the newest point,\n"
    "never from now, so a writer that stopped never loses its history to the clock alone.\n"
    "A point kept by any rule is kept; the newest point is always kept. Without --keep-* flags:\n"
    "keep-within 1h, keep-minutely 60, keep-hourly 24, keep-daily 7, keep-weekly 4, keep-monthly 6.\n";

}  // namespace walship::cmd
