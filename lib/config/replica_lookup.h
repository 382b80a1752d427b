// How the one-shot commands (restore, ls, verify, prune, snapshot, status)
// find a replica in walship.toml instead of a URL on the command line: by
// the database's path, so the replica's options and credentials stay in the
// file. Pure apart from default_config_path, which looks at the
// filesystem.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lib/config/config.h"

namespace walship {

// Where walship.toml is when --config is not given: $WALSHIP_CONFIG, else
// /etc/walship/walship.toml when it exists, else "" (none).
inline constexpr const char* k_default_config_path = "/etc/walship/walship.toml";
std::string default_config_path(const EnvLookup& env, const std::function<bool(const std::string&)>& exists);

// One replica of one database of the file.
struct ConfiguredReplica {
  std::string db_path;        // the replicated database
  ReplicaConfig replica;      // URL and backend settings (credentials...)
  DatabaseSettings settings;  // the database's settings (retention policy...)
};

// Every replicated database's replicas, in file order: [[databases]] with
// role = "replicate", then each database of a [[directories]] entry that
// `directory_files` lists (file names; replicated under <url>/<name>).
// Followed databases (role = "serve-replica") write no replica: left out.
std::vector<ConfiguredReplica> configured_replicas(
    const ReplicateConfig& config,
    const std::function<std::vector<std::string>(const std::string& dir)>& directory_files);

// The databases a [[directories]] entry holds now, as `replicate` finds
// them: its regular files without SQLite's sidecars (-wal, -shm, -journal)
// and hidden files, sorted. Empty when the folder cannot be read.
std::vector<std::string> directory_database_files(const std::string& dir);

// The replicas of the database at `db_path` (absolute and lexically
// normalised by the caller), from [[databases]] or from a [[directories]]
// entry holding it.
std::vector<ConfiguredReplica> replicas_of(const ReplicateConfig& config, const std::string& db_path);

// The one replica a command works on. `db_path` empty: the file's only
// database. `choice` ("--replica"): a URL of that database, or its 1-based
// position in its list; empty: its only replica. Throws UsageError naming
// `config_path` and listing the candidates when the choice is missing,
// ambiguous or unknown.
ConfiguredReplica pick_replica(const ReplicateConfig& config, const std::string& config_path,
                               const std::string& db_path, const std::string& choice);

// An absolute, lexically normal form of `path` (relative paths are taken
// from the current directory), for comparing with the file's paths.
std::string normal_db_path(const std::string& path);

}  // namespace walship
