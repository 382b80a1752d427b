#include "lib/config/replica_lookup.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "lib/replica/replicate.h"
#include "lib/util/error.h"

namespace walship {

namespace {

std::string normal(const std::string& path) {
  return std::filesystem::path(path).lexically_normal().string();
}

std::string list_of(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

std::string default_config_path(const EnvLookup& env, const std::function<bool(const std::string&)>& exists) {
  if (const std::optional<std::string> given = env("WALSHIP_CONFIG"); given && !given->empty()) return *given;
  return exists(k_default_config_path) ? k_default_config_path : "";
}

std::vector<ConfiguredReplica> configured_replicas(
    const ReplicateConfig& config,
    const std::function<std::vector<std::string>(const std::string& dir)>& directory_files) {
  std::vector<ConfiguredReplica> out;
  for (const DatabaseConfig& db : config.databases) {
    for (const ReplicaConfig& replica : db.replicas) out.push_back({db.path, replica, db.settings});
  }
  for (const DirectoryConfig& dir : config.directories) {
    for (const std::string& name : directory_files(dir.path)) {
      ReplicaConfig replica = dir.replica;
      replica.url = join_replica_url(dir.replica.url, name);
      out.push_back({dir.path + "/" + name, replica, dir.settings});
    }
  }
  return out;
}

std::vector<std::string> directory_database_files(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.starts_with('.') || name.ends_with("-wal") || name.ends_with("-shm") ||
        name.ends_with("-journal"))
      continue;
    struct stat st {};
    if (::stat((dir + "/" + name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<ConfiguredReplica> replicas_of(const ReplicateConfig& config, const std::string& db_path) {
  std::vector<ConfiguredReplica> out;
  const std::string wanted = normal(db_path);
  for (const DatabaseConfig& db : config.databases) {
    if (normal(db.path) != wanted) continue;
    for (const ReplicaConfig& replica : db.replicas) out.push_back({db.path, replica, db.settings});
  }
  if (!out.empty()) return out;
  const std::filesystem::path p(wanted);
  for (const DirectoryConfig& dir : config.directories) {
    if (normal(dir.path + "/") != p.parent_path().string() + "/") continue;
    ReplicaConfig replica = dir.replica;
    replica.url = join_replica_url(dir.replica.url, p.filename().string());
    out.push_back({wanted, replica, dir.settings});
  }
  return out;
}

ConfiguredReplica pick_replica(const ReplicateConfig& config, const std::string& config_path,
                               const std::string& db_path, const std::string& choice) {
  std::string db = db_path;
  if (db.empty()) {
    if (config.databases.size() != 1 || !config.directories.empty()) {
      std::vector<std::string> paths;
      for (const DatabaseConfig& d : config.databases) paths.push_back(d.path);
      for (const DirectoryConfig& d : config.directories) paths.push_back(d.path + "/*");
      if (paths.empty()) {
        throw UsageError(config_path + " lists no replicated database: give a replica URL instead");
      }
      throw UsageError(config_path + " lists several databases (" + list_of(paths) +
                       "): give the database's path");
    }
    db = config.databases.front().path;
  }
  const std::vector<ConfiguredReplica> found = replicas_of(config, db);
  if (found.empty()) {
    throw UsageError("database '" + db + "' is not in " + config_path +
                     ": give its path as the file lists it, or a replica URL instead of --config");
  }
  std::vector<std::string> urls;
  for (size_t i = 0; i < found.size(); ++i)
    urls.push_back(std::to_string(i + 1) + ": " + found[i].replica.url);
  if (choice.empty()) {
    if (found.size() == 1) return found.front();
    throw UsageError("database '" + db + "' has " + std::to_string(found.size()) + " replicas in " +
                     config_path + " (" + list_of(urls) + "): pick one with --replica URL or --replica N");
  }
  for (const ConfiguredReplica& r : found) {
    if (r.replica.url == choice) return r;
  }
  if (choice.find_first_not_of("0123456789") == std::string::npos && choice.size() < 6) {
    const size_t n = std::stoul(choice);
    if (n >= 1 && n <= found.size()) return found[n - 1];
  }
  throw UsageError("invalid --replica '" + choice + "': database '" + db + "' has these replicas in " +
                   config_path + ": " + list_of(urls));
}

std::string normal_db_path(const std::string& path) {
  if (path.empty()) return path;
  return std::filesystem::absolute(std::filesystem::path(path)).lexically_normal().string();
}

}  // namespace walship
