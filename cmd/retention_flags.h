// The --keep-* flags `prune` and `replicate` share: registered from the
// option table into text slots, turned into a RetentionPolicy once parsing
// is over.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "cmd/option_flags.h"
#include "lib/replica/retention.h"

namespace walship::cmd {

using RetentionFlags = OptionFlags;

// Adds --keep-within, --keep-minutely ... --keep-monthly and --keep-last;
// returns them so callers can add `excludes`.
std::vector<CLI::Option*> add_retention_flags(CLI::App& sub, RetentionFlags& flags);

// The policy the --keep-* flags give; the default policy when none was
// given. Throws UsageError for a bad value (config.h's
// apply_retention_option, as walship.toml's keep-* keys).
RetentionPolicy retention_policy_of(const RetentionFlags& flags);

// For --help footers: how the rules count, and the default policy.
std::string retention_help();

}  // namespace walship::cmd
