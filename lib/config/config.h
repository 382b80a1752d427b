// walship.toml: the databases one `replicate` process serves (DESIGN.md,
// "Replicate"), and those it follows (serve-replica). Parsing is pure (text
// in, structs out) so it is unit-tested and fuzzed without files.
//
//   http = "127.0.0.1:9090"          # optional: /metrics and /healthz for all
//   max-lag = "10s"                  # optional: /healthz's lag limit
//   preemption-notice = "auto"       # optional: auto, aws, gce, azure or off
//   notice-sync-interval = "100ms"   # optional: shipping interval after a notice
//   on-notice = "drain-node"         # optional: run once on a notice
//
//   [defaults]                       # optional: applies to every entry below
//   sync-interval = "1s"
//
//   [[databases]]
//   path = "/data/app.db"
//   replicas = ["file:///backups/app"]          # URLs, or tables with settings:
//
//   [[databases]]
//   path = "/data/orders.db"
//   snapshot-interval = "6h"
//   [[databases.replicas]]
//   url = "s3://bucket/orders"
//   region = "${AWS_REGION}"                    # ${NAME}: from the environment
//
// An option's value is the text the same flag takes: a string, or bare (an
// integer such as checkpoint-pages = 500 or snapshot-interval = 3600, which
// is seconds; a boolean). option_defs.h checks both the same way.
//
//   [[databases]]                    # followed, not replicated: a live local copy
//   role = "serve-replica"           # default "replicate"
//   path = "/data/replica.db"        # the follower database
//   replicas = ["s3://bucket/app"]   # exactly one
//   poll-interval = "1s"
//
//   [[directories]]                  # every WAL database in the folder, new ones too
//   path = "/data/tenants"
//   replica = "s3://bucket/tenants"  # each database under <replica>/<file name>
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/replica/follower_options.h"
#include "lib/replica/replicator_options.h"

namespace walship {

struct ReplicaConfig {
  std::string url;
  std::map<std::string, std::string> settings;  // backend options (credentials, endpoint...)
};

// Options every database has, from [defaults], the entry or the command line.
struct DatabaseSettings {
  int64_t sync_interval_ms = k_default_sync_interval_ms;
  ReplicatorOptions replicator;   // db_path unset here
  bool custom_retention = false;  // a keep-* key replaced the default policy
  std::string control_socket;     // empty: DB-walship/control.sock
};

struct DatabaseConfig {
  std::string path;
  std::vector<ReplicaConfig> replicas;
  DatabaseSettings settings;
};

struct DirectoryConfig {
  std::string path;
  ReplicaConfig replica;  // the prefix; each database goes under <url>/<file name>
  DatabaseSettings settings;
};

// A [[databases]] entry with role = "serve-replica".
struct FollowerConfig {
  ReplicaConfig replica;  // the one replica it follows
  FollowOptions options;  // db_path: the follower database
};

struct ReplicateConfig {
  std::vector<DatabaseConfig> databases;  // role = "replicate"
  std::vector<DirectoryConfig> directories;
  std::vector<FollowerConfig> followers;  // role = "serve-replica"
  std::string http;                       // listen address for /metrics and /healthz; empty: none
  std::optional<int64_t> max_lag_ms;      // /healthz's lag limit
  // Preemption notices (lib/cloud/preemption_notice.h); unset: the flag's or the default.
  std::optional<std::string> preemption_notice;  // checked: auto, aws, gce, azure or off
  std::optional<int64_t> notice_sync_interval_ms;
  std::optional<std::string> on_notice;  // the command line, split by replicate
};

// The setters both parsers use: `text` is the value as a flag or a
// walship.toml key gives it, checked by parse_option_value() against
// option_defs.h (errors name the option as `shown`: "--sync-interval" or
// "sync-interval"). Each returns false when `key` is not one of its options.
// Throws UsageError.
//
// Replicate's options (k_scope_replicate, and the keep-* rules: the first
// one replaces the default retention policy, later ones add to it).
bool apply_replicate_option(DatabaseSettings& settings, std::string_view key, std::string_view text,
                            std::string_view shown);
// serve-replica's options (k_scope_follow).
bool apply_follow_option(FollowOptions& options, std::string_view key, std::string_view text,
                         std::string_view shown);
// One keep-* rule into `policy`.
bool apply_retention_option(RetentionPolicy& policy, std::string_view key, std::string_view text,
                            std::string_view shown);

// Looks up environment variables for ${NAME} expansion (tests inject one).
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup process_env();

// How a replica's setting is written in walship.toml: in quotes, or bare.
enum class SettingKind { string, integer, boolean };

// Checks one setting of a replica (the backends know their options; cmd/
// passes their check). Throws UsageError with the cause; the parser adds the
// file and line.
using SettingCheck = std::function<void(const std::string& url, const std::string& name, SettingKind kind,
                                        const std::string& value)>;

// Parses walship.toml text. `name` (the file's path) prefixes every error:
// "walship.toml:12: unknown key 'sync_interval' in [[databases]] (known: ...)".
// A replica setting with an empty value is an error; with `check`, each
// setting also passes it. Throws UsageError.
ReplicateConfig parse_config(std::string_view text, const std::string& name, const EnvLookup& env,
                             const SettingCheck& check = {});

// Reads and parses the file. Throws UsageError (missing file, a folder, bad
// content), one line saying what to give instead.
ReplicateConfig load_config(const std::string& path, const SettingCheck& check = {});

}  // namespace walship
