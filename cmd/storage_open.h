// Opens the storage a replica URL names, wrapped in RetryingStorage so every
// command retries transient failures the same way; and the --config/--replica
// flags the one-shot commands share to find a replica in walship.toml by the
// database's path instead.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "backends/registry.h"
#include "lib/config/replica_lookup.h"
#include "lib/storage/storage.h"

namespace walship::cmd {

std::unique_ptr<Storage> open_replica(const std::string& url, const StorageSettings& settings = {});

// --config FILE and --replica URL_OR_INDEX.
struct ConfigFlags {
  std::string config;
  std::string replica;
};
void add_config_flags(CLI::App& sub, ConfigFlags& flags);

// For --help footers.
inline constexpr const char* k_config_help =
    "With --config FILE (default: $WALSHIP_CONFIG, else /etc/walship/walship.toml when it exists and\n"
    "no URL is given) the replica, its options and credentials come from walship.toml, found by the\n"
    "database's path (the only database when the file lists one); --replica URL or --replica N (1 is\n"
    "the first of the database's replicas) picks one when it has several.\n";

// A replica chosen on the command line: by URL, or from walship.toml.
struct ChosenReplica {
  std::unique_ptr<Storage> storage;
  std::string config_path;                      // "" when given by URL
  std::optional<ConfiguredReplica> configured;  // set when it came from the file
};

// By `url` when given (and no --config); else from --config FILE or the
// default walship.toml, the replica of database `db` ("": the file's only
// one). `what` names the command in messages. Throws UsageError when there
// is neither a URL nor a config file, or the file does not say which replica.
ChosenReplica choose_replica(const ConfigFlags& flags, const std::string& url, const std::string& db,
                             const std::string& what);

// For commands whose one positional is the replica URL, or with a config
// file the database's path: it is a database when --config is given or the
// default file lists it as one, else a URL.
ChosenReplica choose_replica(const ConfigFlags& flags, const std::string& url_or_db, const std::string& what);

// The walship.toml that choose_replica(flags, url_or_db, ...) reads: "" when
// `url_or_db` is taken as a URL, or there is no file at all.
std::string config_path_for(const ConfigFlags& flags, const std::string& url_or_db);

}  // namespace walship::cmd
