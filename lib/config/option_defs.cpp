#include "lib/config/option_defs.h"

#include <algorithm>
#include <stdexcept>

#include "lib/util/error.h"

namespace walship {

namespace {

constexpr unsigned k_both = k_scope_replicate | k_scope_follow;
constexpr unsigned k_replicate_key = k_scope_replicate | k_scope_key_only;

constexpr OptionDef k_options[] = {
    // replicate
    {"sync-interval", OptionUnit::duration, true, k_default_sync_interval_ms, 1, k_max_duration_ms,
     k_scope_replicate, "Ship at most this often"},
    {"snapshot-interval", OptionUnit::duration, true, k_default_snapshot_interval_ms, 0, k_max_duration_ms,
     k_scope_replicate, "Write a full snapshot this often (0: never)"},
    {"checkpoint-pages", OptionUnit::count, true, k_default_checkpoint_pages, 1, k_max_count, k_both,
     "Checkpoint (PASSIVE) the WAL past this many pages"},
    {"truncate-pages", OptionUnit::count, true, k_default_truncate_pages, 1, k_max_count, k_scope_replicate,
     "Checkpoint with TRUNCATE past this many WAL pages (app readers kept PASSIVE from finishing)"},
    {"enable-wal", OptionUnit::boolean, true, 0, 0, 1, k_scope_replicate,
     "Switch a rollback-journal database to WAL mode"},
    {"compaction", OptionUnit::boolean, true, 1, 0, 1, k_scope_replicate,
     "Do not write L1-L3 compacted deltas"},
    {"l1-span", OptionUnit::duration, true, k_default_l1_span_ms, 1, k_max_duration_ms, k_replicate_key,
     "An L1 compacted file covers the deltas of one such UTC-aligned span"},
    {"l2-span", OptionUnit::duration, true, k_default_l2_span_ms, 1, k_max_duration_ms, k_replicate_key,
     "An L2 compacted file covers the deltas of one such UTC-aligned span"},
    {"l3-span", OptionUnit::duration, true, k_default_l3_span_ms, 1, k_max_duration_ms, k_replicate_key,
     "An L3 compacted file covers the deltas of one such UTC-aligned span"},
    {"retention-interval", OptionUnit::duration, true, k_default_retention_interval_ms, 1, k_max_duration_ms,
     k_scope_replicate, "Apply the retention policy (prune) this often"},
    {"retention", OptionUnit::boolean, true, 1, 0, 1, k_scope_replicate,
     "Never prune: keep every restore point"},
    {"lease-ttl", OptionUnit::duration, true, k_default_lease_ttl_ms, 3000, 3'600'000, k_scope_replicate,
     "The replica's lease lasts this long unless renewed (every third of it); another writer waits for its "
     "expiry"},
    {"take-over", OptionUnit::boolean, true, 0, 0, 1, k_scope_replicate | k_scope_flag_only,
     "Take the replica's lease even from a live writer (fencing it off), and let this node's data become the "
     "newest when the replica moved on without it"},
    {"shutdown-timeout", OptionUnit::duration, true, k_default_shutdown_timeout_ms, 1000, 3'600'000,
     k_scope_replicate | k_scope_flag_only,
     "On a stop (or when fenced), how long the --exec app has to exit after SIGTERM before SIGKILL"},
    {"control-socket", OptionUnit::path, false, 0, 0, 0, k_scope_replicate,
     "Listen for `walship sync` and `walship snapshot` on this Unix socket (one database; default: "
     "DB-walship/control.sock)"},
    {"workers", OptionUnit::count, true, k_default_workers, 1, k_max_parallelism,
     k_scope_replicate | k_scope_flag_only, "Databases stepped (and uploads) at once"},
    // retention rules (replicate and prune)
    {"keep-within", OptionUnit::duration, false, 0, 1, k_max_duration_ms, k_scope_retention,
     "Keep every point within DURATION (e.g. 1h, 7d) of the newest point"},
    {"keep-minutely", OptionUnit::count, false, 0, 1, k_max_count, k_scope_retention,
     "Keep the newest point of the last N minutes"},
    {"keep-hourly", OptionUnit::count, false, 0, 1, k_max_count, k_scope_retention,
     "Keep the newest point of the last N hours"},
    {"keep-daily", OptionUnit::count, false, 0, 1, k_max_count, k_scope_retention,
     "Keep the newest point of the last N days"},
    {"keep-weekly", OptionUnit::count, false, 0, 1, k_max_count, k_scope_retention,
     "Keep the newest point of the last N ISO weeks"},
    {"keep-monthly", OptionUnit::count, false, 0, 1, k_max_count, k_scope_retention,
     "Keep the newest point of the last N months"},
    {"keep-last", OptionUnit::count, false, 0, 1, k_max_count, k_scope_retention,
     "Keep the N newest snapshots"},
    // serve-replica
    {"poll-interval", OptionUnit::duration, true, k_default_poll_interval_ms, 1, k_max_duration_ms,
     k_scope_follow, "Look for the next delta (one GET) this often"},
    {"list-interval", OptionUnit::duration, true, k_default_list_interval_ms, 1, k_max_duration_ms,
     k_scope_follow,
     "List the replica this often, to catch up through compacted deltas or follow a new snapshot"},
    {"parallelism", OptionUnit::count, true, k_default_parallelism, 1, k_max_parallelism, k_scope_follow,
     "Downloads in flight while catching up"},
    // the process (walship.toml's top level; the flag is cmd/http_listener's)
    {"max-lag", OptionUnit::duration, true, k_default_max_lag_ms, 1, k_max_duration_ms, k_scope_process,
     "/healthz answers 503 when a database lags more than this"},
    // the process: replicate's preemption notices (lib/cloud/preemption_notice.h)
    {"preemption-notice", OptionUnit::choice, true, 0, 0, 4, k_scope_process,
     "Watch the cloud's metadata service for a preemption notice: auto (the cloud the machine's DMI names, "
     "no request elsewhere), aws, gce, azure or off"},
    {"notice-sync-interval", OptionUnit::duration, true, k_default_notice_sync_interval_ms, 1,
     k_max_duration_ms, k_scope_process, "After a preemption notice, ship at most this often until stopped"},
    {"on-notice", OptionUnit::text, false, 0, 0, 0, k_scope_process,
     "Run this command once on a preemption notice (a drain, a webhook); its failure is logged, not fatal"},
};

// The words of each choice option, in value order.
constexpr std::string_view k_notice_modes[] = {"auto", "aws", "gce", "azure", "off"};

struct Unit {
  std::string_view suffix;
  int64_t ms;
};
// Largest first: render_option_value picks the first that divides.
constexpr Unit k_units[] = {{"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1000}, {"ms", 1}};

enum class DurationText { ok, malformed, too_large };

// "500ms", "1s", "5m", "1h", "7d" or bare seconds, at most k_max_duration_ms.
DurationText read_duration(std::string_view text, int64_t& ms) {
  size_t i = 0;
  int64_t value = 0;
  bool huge = false;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    if (value > k_max_duration_ms) huge = true;  // keep reading digits, never overflow
    if (!huge) value = value * 10 + (text[i] - '0');
  }
  if (i == 0) return DurationText::malformed;
  const std::string_view suffix = text.substr(i);
  int64_t per = 0;
  if (suffix.empty()) per = 1000;
  for (const Unit& u : k_units) {
    if (u.suffix == suffix) per = u.ms;
  }
  if (per == 0) return DurationText::malformed;
  if (huge || value > k_max_duration_ms / per) return DurationText::too_large;
  ms = value * per;
  return DurationText::ok;
}

std::string duration_cause(const OptionDef& def) {
  return "give a duration from " + render_option_value(def, def.min) + " to " +
         render_option_value(def, def.max) + " such as 500ms, 1s, 5m, 1h or 7d (a bare number is seconds)";
}

std::string count_cause(const OptionDef& def) {
  return "give a whole number from " + std::to_string(def.min) + " to " + std::to_string(def.max);
}

[[noreturn]] void invalid(std::string_view shown, std::string_view text, const std::string& cause) {
  throw UsageError("invalid " + std::string(shown) + " '" + std::string(text) + "': " + cause);
}

}  // namespace

std::optional<int64_t> parse_duration_ms(std::string_view text) {
  int64_t ms = 0;
  if (read_duration(text, ms) != DurationText::ok) return std::nullopt;
  return ms;
}

std::span<const OptionDef> option_defs() { return k_options; }

std::span<const std::string_view> option_choices(const OptionDef& def) {
  if (def.unit == OptionUnit::choice && def.name == "preemption-notice") return k_notice_modes;
  return {};
}

const OptionDef* find_option(std::string_view name) {
  const auto* it = std::find_if(std::begin(k_options), std::end(k_options),
                                [name](const OptionDef& d) { return d.name == name; });
  return it == std::end(k_options) ? nullptr : it;
}

const OptionDef& option(std::string_view name) {
  const OptionDef* def = find_option(name);
  if (def == nullptr) throw std::logic_error("no option '" + std::string(name) + "' in the option table");
  return *def;
}

int64_t parse_option_value(const OptionDef& def, std::string_view text, std::string_view shown) {
  switch (def.unit) {
    case OptionUnit::duration: {
      int64_t ms = 0;
      const DurationText read = read_duration(text, ms);
      if (read == DurationText::too_large) {
        invalid(shown, text, "it must be at most " + render_option_value(def, def.max));
      }
      if (read != DurationText::ok) invalid(shown, text, duration_cause(def));
      if (ms < def.min) {
        invalid(shown, text,
                def.min <= 1 ? "it must be more than 0"
                             : "it must be at least " + render_option_value(def, def.min));
      }
      return ms;
    }
    case OptionUnit::count: {
      int64_t n = 0;
      size_t i = 0;
      for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && n <= def.max; ++i)
        n = n * 10 + (text[i] - '0');
      if (text.empty() || i != text.size() || n < def.min || n > def.max) {
        invalid(shown, text, count_cause(def));
      }
      return n;
    }
    case OptionUnit::boolean:
      // Exactly these two: an empty value (an unset ${VAR}) or "1"/"yes"
      // must not quietly switch anything on or off.
      if (text == "true") return 1;
      if (text == "false") return 0;
      invalid(shown, text, "expected exactly true or false");
    case OptionUnit::choice: {
      const std::span<const std::string_view> choices = option_choices(def);
      std::string listed;
      for (size_t i = 0; i < choices.size(); ++i) {
        if (choices[i] == text) return static_cast<int64_t>(i);
        listed += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + std::string(choices[i]);
      }
      invalid(shown, text, "expected " + listed);
    }
    case OptionUnit::text:
      if (text.empty()) invalid(shown, text, "give a command, or leave the option out");
      return 0;
    case OptionUnit::path:
      if (!text.starts_with('/')) invalid(shown, text, "give an absolute path");
      return 0;
  }
  invalid(shown, text, "unknown kind of option");
}

std::string option_flag(const OptionDef& def) {
  const bool negated = def.unit == OptionUnit::boolean && def.default_value == 1;
  return (negated ? "--no-" : "--") + std::string(def.name);
}

std::string render_option_value(const OptionDef& def, int64_t value) {
  if (def.unit == OptionUnit::boolean) return value != 0 ? "true" : "false";
  if (def.unit == OptionUnit::choice) {
    const std::span<const std::string_view> choices = option_choices(def);
    return value >= 0 && static_cast<size_t>(value) < choices.size() ? std::string(choices[value]) : "";
  }
  if (def.unit == OptionUnit::text || def.unit == OptionUnit::path) return "";
  if (def.unit == OptionUnit::count) return std::to_string(value);
  return render_duration_ms(value);
}

std::string render_duration_ms(int64_t value) {
  if (value == 0) return "0";
  for (const Unit& u : k_units) {
    // "24h" reads better than "1d"; days from two on.
    if (u.suffix == "d" && value < 2 * u.ms) continue;
    if (value % u.ms == 0) return std::to_string(value / u.ms) + std::string(u.suffix);
  }
  return std::to_string(value) + "ms";
}

std::string render_default(const OptionDef& def) {
  return def.has_default ? render_option_value(def, def.default_value) : "";
}

}  // namespace walship
