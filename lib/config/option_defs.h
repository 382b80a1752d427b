// The one definition of every tunable of replicate and serve-replica: name
// (the flag is --name, the walship.toml key is name), default, limits, unit
// and help text. cmd/ registers its flags and renders --help from the table;
// config.cpp reads walship.toml keys through the same parse_option_value(), so
// a flag and a key given the same text get the same value or the same error.
// ReplicatorOptions and FollowOptions take their defaults from the constants
// below. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace walship {

// Defaults. The table and the option structs both use these, nothing else
// spells them.
inline constexpr int64_t k_default_sync_interval_ms = 1000;
inline constexpr int64_t k_default_snapshot_interval_ms = 24LL * 3'600'000;
inline constexpr uint32_t k_default_checkpoint_pages = 1000;
inline constexpr uint32_t k_default_truncate_pages = 100'000;
inline constexpr int64_t k_default_retention_interval_ms = 3'600'000;
inline constexpr int64_t k_default_l1_span_ms = 60'000;      // L1: one file per UTC minute
inline constexpr int64_t k_default_l2_span_ms = 3'600'000;   // L2: per hour
inline constexpr int64_t k_default_l3_span_ms = 86'400'000;  // L3: per day
inline constexpr int64_t k_default_poll_interval_ms = 1000;
inline constexpr int64_t k_default_list_interval_ms = 60'000;
inline constexpr int k_default_parallelism = 4;
inline constexpr int k_default_workers = 4;
// zstd levels. 1 for both: on 1 MiB frames of rows half random, half text,
// level 1 compresses 2.03x at 561 MB/s a core and level 3 2.02x at 185 MB/s,
// so a higher level only slows a snapshot down (README.md, "Status").
inline constexpr int k_default_delta_zstd_level = 1;
inline constexpr int k_default_snapshot_zstd_level = 1;
inline constexpr int64_t k_default_max_lag_ms = 10'000;  // /healthz's lag limit
inline constexpr int64_t k_default_lease_ttl_ms = 30'000;
inline constexpr int64_t k_default_shutdown_timeout_ms = 20'000;
inline constexpr int64_t k_default_notice_sync_interval_ms = 100;  // after a preemption notice
// How long `walship sync` (a control socket's "sync" line) waits for durability.
inline constexpr int64_t k_default_sync_timeout_ms = 5000;

// Limits.
inline constexpr int64_t k_max_count = 0x7fffffff;
// 100 years: far beyond any useful interval, far below int64 milliseconds,
// so no arithmetic on a duration can overflow.
inline constexpr int64_t k_max_duration_ms = 36'500LL * 86'400'000;
inline constexpr int64_t k_max_parallelism = 64;

enum class OptionUnit {
  duration,  // "500ms", "1s", "5m", "1h", "7d", or a bare number of seconds; the value is in ms
  count,     // a whole number
  boolean,   // exactly "true" or "false"; the value is 0 or 1
  choice,    // one of option_choices(def); the value is its index
  text,      // any text but empty (a command); the value is 0, the caller keeps the text
  path,      // a file's absolute path; the value is 0, the caller keeps the text
};

// Where an option applies (a bit set).
enum OptionScope : unsigned {
  k_scope_replicate = 1,  // replicate's flags; [defaults], [[databases]], [[directories]]
  k_scope_follow = 2,     // serve-replica's flags; [defaults], role = "serve-replica" entries
  k_scope_retention = 4,  // the --keep-* flags of replicate and prune; the keep-* keys
  k_scope_flag_only = 8,  // a flag with no walship.toml key
  k_scope_key_only = 16,  // a walship.toml key with no flag
  k_scope_process = 32,   // the process, not a database: walship.toml's top level
};

struct OptionDef {
  std::string_view name;
  OptionUnit unit;
  bool has_default;       // false: unset unless given (the keep-* rules)
  int64_t default_value;  // in the unit's value (ms, a count, 0/1)
  int64_t min;            // inclusive limits of the value
  int64_t max;
  unsigned scope;
  // --help text. A boolean that defaults to true is switched off by the
  // flag --no-NAME, and its help describes that flag.
  std::string_view help;
};

// "500ms", "1s", "5m", "1h", "7d", or a bare number of seconds, at most
// k_max_duration_ms. nullopt if the text is none of these.
std::optional<int64_t> parse_duration_ms(std::string_view text);

// Every option, in --help order.
std::span<const OptionDef> option_defs();

// The words a `choice` option takes, in value order; empty for other units.
std::span<const std::string_view> option_choices(const OptionDef& def);

// The option named `name`; nullptr when there is none.
const OptionDef* find_option(std::string_view name);

// The option named `name`; throws std::logic_error when there is none (a
// programming error: callers name table entries).
const OptionDef& option(std::string_view name);

// Parses `text` as a value of `def`, checking its limits. Throws UsageError
// "invalid <shown> '<text>': <cause>", where `shown` is how the caller names
// the option ("--sync-interval" for a flag, "sync-interval" for a key). The
// one check both the flag and the walship.toml parsers use.
int64_t parse_option_value(const OptionDef& def, std::string_view text, std::string_view shown);

// The flag that sets `def`: "--NAME", or "--no-NAME" for a boolean that
// defaults to true.
std::string option_flag(const OptionDef& def);

// `value` as text `parse_option_value` reads back: durations with the largest
// unit that divides them ("24h", "500ms", "0"), counts in decimal, booleans
// as true/false.
std::string render_option_value(const OptionDef& def, int64_t value);

// A duration as parse_duration_ms() reads it back, in the largest unit that
// divides it ("24h", "500ms", "0").
std::string render_duration_ms(int64_t value);

// The default of `def` as --help shows it; empty when it has none.
std::string render_default(const OptionDef& def);

}  // namespace walship
