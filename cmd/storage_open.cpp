#include "cmd/storage_open.h"

#include <unistd.h>

#include "backends/registry.h"
#include "backends/retrying_storage.h"
#include "cmd/option_flags.h"
#include "lib/util/error.h"

namespace walship::cmd {

std::unique_ptr<Storage> open_replica(const std::string& url, const StorageSettings& settings) {
  return std::make_unique<RetryingStorage>(open_storage(url, settings));
}

void add_config_flags(CLI::App& sub, ConfigFlags& flags) {
  sub.add_option("-c,--config", flags.config,
                 "Find the replica in this walship.toml by the database's path (default: $WALSHIP_CONFIG, "
                 "else /etc/walship/walship.toml when it exists)");
  sub.add_option("--replica", flags.replica,
                 "With --config: which of the database's replicas, by URL or position (1, 2...)");
}

namespace {

std::string default_path() {
  return default_config_path(process_env(),
                             [](const std::string& p) { return ::access(p.c_str(), F_OK) == 0; });
}

ChosenReplica from_config(const std::string& config_path, const ConfigFlags& flags, const std::string& db) {
  const ReplicateConfig config = load_config(config_path, replica_setting_check());
  ConfiguredReplica picked = pick_replica(config, config_path, normal_db_path(db), flags.replica);
  ChosenReplica chosen;
  chosen.storage = open_replica(picked.replica.url, picked.replica.settings);
  chosen.config_path = config_path;
  chosen.configured = std::move(picked);
  return chosen;
}

}  // namespace

ChosenReplica choose_replica(const ConfigFlags& flags, const std::string& url, const std::string& db,
                             const std::string& what) {
  if (!flags.config.empty()) {
    if (!url.empty()) {
      throw UsageError(what + " takes a replica URL or --config FILE, not both: the file names the replica");
    }
    return from_config(flags.config, flags, db);
  }
  if (!url.empty()) {
    if (!flags.replica.empty()) {
      throw UsageError(
          "--replica picks one of a database's replicas in walship.toml: pass --config FILE too");
    }
    ChosenReplica chosen;
    chosen.storage = open_replica(url);
    return chosen;
  }
  const std::string path = default_path();
  if (path.empty()) {
    throw UsageError("a replica URL is required: give it to " + what +
                     ", or --config FILE (or $WALSHIP_CONFIG) listing the database");
  }
  return from_config(path, flags, db);
}

std::string config_path_for(const ConfigFlags& flags, const std::string& url_or_db) {
  if (!flags.config.empty()) return flags.config;
  if (url_or_db.empty()) return default_path();
  // A URL on the command line wins, unless it is a database the default file lists.
  const std::string path = url_or_db.starts_with('/') ? default_path() : "";
  if (path.empty()) return "";
  try {
    return replicas_of(load_config(path, replica_setting_check()), normal_db_path(url_or_db)).empty() ? ""
                                                                                                      : path;
  } catch (const UsageError&) {
    return "";  // an unreadable default file does not stop a command given a URL
  }
}

ChosenReplica choose_replica(const ConfigFlags& flags, const std::string& url_or_db,
                             const std::string& what) {
  const std::string path = config_path_for(flags, url_or_db);
  if (path.empty()) return choose_replica(flags, url_or_db, "", what);
  return from_config(path, flags, url_or_db);
}

}  // namespace walship::cmd
