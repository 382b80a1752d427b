#include "cmd/retention_flags.h"

#include "lib/config/config.h"

namespace walship::cmd {

std::vector<CLI::Option*> add_retention_flags(CLI::App& sub, RetentionFlags& flags) {
  return flags.add(sub, k_scope_retention);
}

RetentionPolicy retention_policy_of(const RetentionFlags& flags) {
  RetentionPolicy p;
  for (const auto& [name, text] : flags.given()) {
    if (option(name).scope & k_scope_retention) apply_retention_option(p, name, text, "--" + name);
  }
  return p.empty() ? default_retention_policy() : p;
}

std::string retention_help() {
  const RetentionPolicy d = default_retention_policy();
  const std::string within = render_option_value(option("keep-within"), d.keep_within_ms);
  return "Retention follows restic's forget: --keep-within keeps every restore point committed within\n"
         "DURATION of the NEWEST point; --keep-minutely/hourly/daily/weekly/monthly N keep the newest\n"
         "point of each of the N most recent UTC minutes/hours/days/ISO weeks/months that have points;\n"
         "--keep-last N keeps the N newest snapshots. Everything counts back from the newest point,\n"
         "never from now, so a writer that stopped never loses its history to the clock alone.\n"
         "A point kept by any rule is kept; the newest point is always kept. Without --keep-* flags:\n"
         "keep-within " +
         within + ", keep-minutely " + std::to_string(d.keep_minutely) + ", keep-hourly " +
         std::to_string(d.keep_hourly) + ", keep-daily " + std::to_string(d.keep_daily) + ", keep-weekly " +
         std::to_string(d.keep_weekly) + ", keep-monthly " + std::to_string(d.keep_monthly) + ".\n";
}

}  // namespace walship::cmd
