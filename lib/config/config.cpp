#include "lib/config/config.h"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "lib/util/error.h"
#include "lib/util/listen_address.h"

namespace walship {

namespace {

// The walship.toml keys of one scope of option_defs.h, in table order;
// with `own_first`, those of no other scope come first.
std::vector<std::string_view> keys_of(unsigned scope, bool own_first = false) {
  std::vector<std::string_view> keys;
  for (const OptionDef& d : option_defs()) {
    if ((d.scope & scope) != 0 && (d.scope & k_scope_flag_only) == 0) keys.push_back(d.name);
  }
  if (own_first) {
    std::stable_partition(keys.begin(), keys.end(),
                          [scope](std::string_view k) { return (option(k).scope & ~scope) == 0; });
  }
  return keys;
}

bool has_key(unsigned scope, std::string_view key) {
  const OptionDef* d = find_option(key);
  return d != nullptr && (d->scope & scope) != 0 && (d->scope & k_scope_flag_only) == 0;
}

bool is_option_key(std::string_view key) { return has_key(k_scope_replicate | k_scope_retention, key); }
bool is_follow_key(std::string_view key) { return has_key(k_scope_follow, key); }

std::string join(const std::vector<std::string_view>& words) {
  std::string out;
  for (std::string_view w : words) out += (out.empty() ? "" : ", ") + std::string(w);
  return out;
}

class Parser {
 public:
  Parser(std::string name, const EnvLookup& env, const SettingCheck& check)
      : m_name(std::move(name)), m_env(env), m_check(check) {}

  [[noreturn]] void fail(const toml::source_region& where, const std::string& what) const {
    throw UsageError(m_name + ":" + std::to_string(where.begin.line) + ": " + what);
  }

  std::string expand(const std::string& text, const toml::source_region& where) const {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
        const size_t end = text.find('}', i + 2);
        if (end == std::string::npos) fail(where, "unterminated ${ in '" + text + "'");
        const std::string var = text.substr(i + 2, end - i - 2);
        const std::optional<std::string> value = m_env(var);
        if (!value) fail(where, "environment variable '" + var + "' is not set (used as ${" + var + "})");
        out += *value;
        i = end;
      } else {
        out += text[i];
      }
    }
    return out;
  }

  std::string string_of(const toml::node& node, const std::string& key) const {
    if (const auto* s = node.as_string()) return expand(s->get(), node.source());
    fail(node.source(), "'" + key + "' must be a string");
  }

  // A setting for a backend: strings, numbers and booleans, as text.
  std::pair<std::string, SettingKind> setting_of(const toml::node& node, const std::string& key) const {
    if (const auto* s = node.as_string()) return {expand(s->get(), node.source()), SettingKind::string};
    if (const auto* i = node.as_integer()) return {std::to_string(i->get()), SettingKind::integer};
    if (const auto* b = node.as_boolean()) return {b->get() ? "true" : "false", SettingKind::boolean};
    fail(node.source(), "'" + key + "' must be a string, a number or a boolean");
  }

  // `m_check` (the backends) judges name, kind and value; an empty value
  // (often an unset or empty ${VAR}) is refused here too, as the backends
  // refuse it in a URL, so it never silently switches a default off.
  void check_setting(const std::string& url, const std::string& key, const std::string& value,
                     SettingKind kind, const toml::node& node) const {
    if (m_check) {
      try {
        m_check(url, key, kind, value);
      } catch (const UsageError& e) {
        fail(node.source(), e.what());
      }
    }
    if (value.empty()) {
      fail(node.source(),
           "invalid option " + key + "='': the value is empty; give one or leave the option out");
    }
  }

  // The text of an option's value: a string (with ${NAME} expanded), or a
  // bare value as written (an integer, true, false...). It is then checked
  // as the same flag's text is, so both give one value or one error.
  std::string option_text(const toml::node& node) const {
    if (const auto* s = node.as_string()) return expand(s->get(), node.source());
    if (const auto* i = node.as_integer()) return std::to_string(i->get());
    if (const auto* b = node.as_boolean()) return b->get() ? "true" : "false";
    std::ostringstream text;
    node.visit([&text](const auto& value) { text << value; });
    return text.str();
  }

  // Runs a setter on the node's text; its UsageError gets the line.
  template <typename Setter>
  void set_at(const toml::node& node, const Setter& setter) const {
    const std::string text = option_text(node);
    try {
      setter(text);
    } catch (const UsageError& e) {
      fail(node.source(), e.what());
    }
  }

  // Applies an option key; false if `key` is not one.
  bool apply_option(DatabaseSettings& settings, const std::string& key, const toml::node& node) const {
    if (!is_option_key(key)) return false;
    set_at(node, [&](const std::string& text) { apply_replicate_option(settings, key, text, key); });
    return true;
  }

  // Applies a follower option key; false if `key` is not one.
  bool apply_follow(FollowOptions& options, const std::string& key, const toml::node& node) const {
    if (!is_follow_key(key)) return false;
    set_at(node, [&](const std::string& text) { apply_follow_option(options, key, text, key); });
    return true;
  }

  // A [[databases]] entry with role = "serve-replica": a follower database
  // and the one replica it follows; replicate's options are errors there.
  FollowerConfig follower_of(const toml::table& table, const toml::node& entry,
                             const FollowOptions& defaults) const {
    FollowerConfig follower;
    follower.options = defaults;
    std::vector<ReplicaConfig> replicas;
    for (const auto& [k, v] : table) {
      const std::string key(k.str());
      if (key == "role") continue;
      if (key == "path") {
        follower.options.db_path = string_of(v, key);
      } else if (key == "replica") {
        replicas.push_back(replica_of(v, "[[databases]]"));
      } else if (key == "replicas") {
        const auto* list = v.as_array();
        if (!list) fail(v.source(), "'replicas' must be an array of URLs or of tables");
        for (const toml::node& r : *list) replicas.push_back(replica_of(r, "[[databases]]"));
      } else if (!apply_follow(follower.options, key, v)) {
        const std::string keys = "path, role, replica, replicas, " + join(keys_of(k_scope_follow, true));
        if (is_option_key(key))
          fail(v.source(),
               "'" + key + "' does not apply to role = \"serve-replica\" (its keys: " + keys + ")");
        fail(v.source(), "unknown key '" + key +
                             "' in a [[databases]] entry with role = \"serve-replica\" (known: " + keys +
                             ")");
      }
    }
    const std::string& path = follower.options.db_path;
    if (path.empty()) fail(entry.source(), "a [[databases]] entry has no 'path'");
    if (!path.starts_with('/')) fail(entry.source(), "database path '" + path + "' must be absolute");
    if (replicas.size() != 1) {
      fail(entry.source(), "database '" + path + "' has role = \"serve-replica\" and " +
                               std::to_string(replicas.size()) +
                               " replicas: a follower follows exactly one replica (replicas = [\"URL\"])");
    }
    follower.replica = std::move(replicas.front());
    return follower;
  }

  // "replicate" (the default) or "serve-replica".
  std::string role_of(const toml::table& table) const {
    const toml::node* node = table.get("role");
    if (!node) return "replicate";
    const std::string role = string_of(*node, "role");
    if (role != "replicate" && role != "serve-replica") {
      fail(node->source(), "unknown role '" + role + "' (known: replicate, serve-replica)");
    }
    return role;
  }

  [[noreturn]] void unknown(const toml::node& node, const std::string& key, const std::string& where,
                            std::vector<std::string_view> known) const {
    for (std::string_view k : keys_of(k_scope_replicate | k_scope_retention)) known.push_back(k);
    fail(node.source(), "unknown key '" + key + "' in " + where + " (known: " + join(known) + ")");
  }

  ReplicaConfig replica_of(const toml::node& node, const std::string& where) const {
    ReplicaConfig replica;
    if (node.is_string()) {
      replica.url = string_of(node, "replicas");
    } else if (const auto* table = node.as_table()) {
      std::vector<std::tuple<std::string, SettingKind, const toml::node*>> given;
      for (const auto& [k, v] : *table) {
        const std::string key(k.str());
        if (key == "url") {
          replica.url = string_of(v, key);
        } else {
          auto [value, kind] = setting_of(v, key);
          replica.settings[key] = value;
          given.emplace_back(key, kind, &v);
        }
      }
      if (replica.url.empty()) fail(node.source(), "a replica in " + where + " has no 'url'");
      for (const auto& [key, kind, v] : given)
        check_setting(replica.url, key, replica.settings[key], kind, *v);
    } else {
      fail(node.source(), "a replica must be a URL string or a table with 'url'");
    }
    if (replica.url.empty()) fail(node.source(), "empty replica URL in " + where);
    return replica;
  }

  // [defaults]: options of both roles, inherited by every entry.
  void parse_defaults(const toml::table& root, DatabaseSettings& defaults,
                      FollowOptions& follow_defaults) const {
    const toml::node* node = root.get("defaults");
    if (!node) return;
    const auto* table = node->as_table();
    if (!table) fail(node->source(), "'defaults' must be a table: [defaults]");
    for (const auto& [k, v] : *table) {
      const std::string key(k.str());
      const bool replicate_key = apply_option(defaults, key, v);
      const bool follow_key = apply_follow(follow_defaults, key, v);
      if (!replicate_key && !follow_key) {
        std::vector<std::string_view> follow_only;
        for (std::string_view name : keys_of(k_scope_follow)) {
          if (!is_option_key(name)) follow_only.push_back(name);
        }
        unknown(v, key, "[defaults]", follow_only);
      }
    }
  }

  // The top level's own keys: http, max-lag and the preemption notice's.
  void parse_process_keys(const toml::table& root, ReplicateConfig& config) const {
    for (const auto& [k, v] : root) {
      const std::string key(k.str());
      if (key == "http") {
        config.http = string_of(v, key);
        try {
          parse_listen_address(config.http, "'http'");
        } catch (const UsageError& e) {
          fail(v.source(), e.what());
        }
      } else if (key == "max-lag") {
        set_at(v, [&](const std::string& text) {
          config.max_lag_ms = parse_option_value(option("max-lag"), text, "max-lag");
        });
      } else if (key == "preemption-notice") {
        set_at(v, [&](const std::string& text) {
          parse_option_value(option("preemption-notice"), text, "preemption-notice");
          config.preemption_notice = text;
        });
      } else if (key == "notice-sync-interval") {
        set_at(v, [&](const std::string& text) {
          config.notice_sync_interval_ms = parse_option_value(option("notice-sync-interval"), text, key);
        });
      } else if (key == "on-notice") {
        set_at(v, [&](const std::string& text) {
          parse_option_value(option("on-notice"), text, "on-notice");
          config.on_notice = text;
        });
      } else if (key != "defaults" && key != "databases" && key != "directories") {
        fail(v.source(), "unknown key '" + key +
                             "' (known: http, max-lag, preemption-notice, notice-sync-interval, on-notice, "
                             "[defaults], [[databases]], [[directories]])");
      }
    }
  }

  // A [[databases]] entry with role = "replicate".
  DatabaseConfig database_of(const toml::table& table, const toml::node& entry,
                             const DatabaseSettings& defaults) const {
    DatabaseConfig db;
    db.settings = defaults;
    for (const auto& [k, v] : table) {
      const std::string key(k.str());
      if (key == "role") continue;
      if (key == "path") {
        db.path = string_of(v, key);
      } else if (key == "replica") {
        db.replicas.push_back(replica_of(v, "[[databases]]"));
      } else if (key == "replicas") {
        const auto* list = v.as_array();
        if (!list) fail(v.source(), "'replicas' must be an array of URLs or of tables");
        for (const toml::node& r : *list) db.replicas.push_back(replica_of(r, "[[databases]]"));
      } else if (!apply_option(db.settings, key, v)) {
        if (is_follow_key(key)) {
          fail(v.source(),
               "'" + key + "' applies to role = \"serve-replica\" only (this database is replicated)");
        }
        unknown(v, key, "[[databases]]", {"path", "role", "replica", "replicas"});
      }
    }
    if (db.path.empty()) fail(entry.source(), "a [[databases]] entry has no 'path'");
    if (!db.path.starts_with('/')) fail(entry.source(), "database path '" + db.path + "' must be absolute");
    if (db.replicas.empty()) {
      fail(entry.source(), "database '" + db.path + "' has no replica: add replicas = [\"URL\"]");
    }
    return db;
  }

  // A [[directories]] entry.
  DirectoryConfig directory_of(const toml::table& table, const toml::node& entry,
                               const DatabaseSettings& defaults) const {
    DirectoryConfig dir;
    dir.settings = defaults;
    for (const auto& [k, v] : table) {
      const std::string key(k.str());
      if (key == "path") {
        dir.path = string_of(v, key);
      } else if (key == "replica") {
        dir.replica = replica_of(v, "[[directories]]");
      } else if (!apply_option(dir.settings, key, v)) {
        unknown(v, key, "[[directories]]", {"path", "replica"});
      }
    }
    if (dir.path.empty() || !dir.path.starts_with('/')) {
      fail(entry.source(), "a [[directories]] entry needs an absolute 'path'");
    }
    if (dir.replica.url.empty()) fail(entry.source(), "directory '" + dir.path + "' has no 'replica'");
    return dir;
  }

  // The tables of the array `name` ([[databases]], [[directories]]).
  std::vector<std::pair<const toml::table*, const toml::node*>> entries_of(const toml::table& root,
                                                                           const std::string& name) const {
    std::vector<std::pair<const toml::table*, const toml::node*>> out;
    const toml::node* node = root.get(name);
    if (!node) return out;
    const auto* array = node->as_array();
    if (!array) fail(node->source(), "'" + name + "' must be an array of tables: [[" + name + "]]");
    for (const toml::node& entry : *array) {
      const auto* table = entry.as_table();
      if (!table) fail(entry.source(), "each entry of '" + name + "' must be a table: [[" + name + "]]");
      out.emplace_back(table, &entry);
    }
    return out;
  }

  ReplicateConfig parse(const toml::table& root) const {
    ReplicateConfig config;
    DatabaseSettings defaults;
    FollowOptions follow_defaults;
    parse_defaults(root, defaults, follow_defaults);
    parse_process_keys(root, config);
    for (const auto& [table, entry] : entries_of(root, "databases")) {
      if (role_of(*table) == "serve-replica") {
        config.followers.push_back(follower_of(*table, *entry, follow_defaults));
      } else {
        config.databases.push_back(database_of(*table, *entry, defaults));
      }
    }
    for (const auto& [table, entry] : entries_of(root, "directories"))
      config.directories.push_back(directory_of(*table, *entry, defaults));
    if (config.databases.empty() && config.directories.empty() && config.followers.empty()) {
      throw UsageError(m_name + ": no [[databases]] or [[directories]]: nothing to replicate");
    }
    std::set<std::string> seen;
    auto once = [&](const std::string& path) {
      if (!seen.insert(path).second) throw UsageError(m_name + ": database '" + path + "' is listed twice");
    };
    for (const DatabaseConfig& db : config.databases) once(db.path);
    for (const FollowerConfig& f : config.followers) once(f.options.db_path);
    return config;
  }

 private:
  std::string m_name;
  const EnvLookup& m_env;
  const SettingCheck& m_check;
};

}  // namespace

bool apply_retention_option(RetentionPolicy& policy, std::string_view key, std::string_view text,
                            std::string_view shown) {
  const OptionDef* def = find_option(key);
  if (def == nullptr || (def->scope & k_scope_retention) == 0) return false;
  const int64_t value = parse_option_value(*def, text, shown);
  if (key == "keep-within") {
    policy.keep_within_ms = value;
    return true;
  }
  const auto n = static_cast<int>(value);
  if (key == "keep-last") policy.keep_last = n;
  if (key == "keep-minutely") policy.keep_minutely = n;
  if (key == "keep-hourly") policy.keep_hourly = n;
  if (key == "keep-daily") policy.keep_daily = n;
  if (key == "keep-weekly") policy.keep_weekly = n;
  if (key == "keep-monthly") policy.keep_monthly = n;
  return true;
}

bool apply_replicate_option(DatabaseSettings& settings, std::string_view key, std::string_view text,
                            std::string_view shown) {
  const OptionDef* def = find_option(key);
  if (def == nullptr || (def->scope & k_scope_flag_only) != 0) return false;
  if ((def->scope & k_scope_retention) != 0) {
    // The first keep-* rule replaces the built-in default policy; rules
    // from [defaults] are inherited one by one.
    RetentionPolicy policy = settings.custom_retention ? settings.replicator.retention : RetentionPolicy{};
    apply_retention_option(policy, key, text, shown);
    settings.replicator.retention = policy;
    settings.custom_retention = true;
    return true;
  }
  if ((def->scope & k_scope_replicate) == 0) return false;
  const int64_t value = parse_option_value(*def, text, shown);
  ReplicatorOptions& r = settings.replicator;
  if (key == "sync-interval") {
    settings.sync_interval_ms = value;
  } else if (key == "snapshot-interval") {
    r.snapshot_interval_ms = value;
  } else if (key == "checkpoint-pages") {
    r.checkpoint_pages = static_cast<uint32_t>(value);
  } else if (key == "truncate-pages") {
    r.truncate_pages = static_cast<uint32_t>(value);
  } else if (key == "enable-wal") {
    r.enable_wal = value != 0;
  } else if (key == "control-socket") {
    settings.control_socket = std::string(text);
  } else if (key == "compaction") {
    if (value == 0) r.compaction.clear();
  } else if (key == "l1-span" || key == "l2-span" || key == "l3-span") {
    const int level = key[1] - '0';
    for (CompactionLevel& l : r.compaction) {
      if (l.level == level) l.span_ms = value;
    }
  } else if (key == "retention") {
    r.retention_enabled = value != 0;
  } else if (key == "retention-interval") {
    r.retention_interval_ms = value;
  } else if (key == "lease-ttl") {
    r.lease_ttl_ms = value;
  } else {
    return false;
  }
  return true;
}

bool apply_follow_option(FollowOptions& options, std::string_view key, std::string_view text,
                         std::string_view shown) {
  const OptionDef* def = find_option(key);
  if (def == nullptr || (def->scope & k_scope_follow) == 0 || (def->scope & k_scope_flag_only) != 0)
    return false;
  const int64_t value = parse_option_value(*def, text, shown);
  if (key == "poll-interval") {
    options.poll_interval_ms = value;
  } else if (key == "list-interval") {
    options.list_interval_ms = value;
  } else if (key == "checkpoint-pages") {
    options.checkpoint_pages = static_cast<uint32_t>(value);
  } else if (key == "parallelism") {
    options.parallelism = static_cast<int>(value);
  } else {
    return false;
  }
  return true;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  };
}

ReplicateConfig parse_config(std::string_view text, const std::string& name, const EnvLookup& env,
                             const SettingCheck& check) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw UsageError(name + ":" + std::to_string(e.source().begin.line) + ": " +
                     std::string(e.description()));
  }
  return Parser(name, env, check).parse(root);
}

ReplicateConfig load_config(const std::string& path, const SettingCheck& check) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw UsageError("the configuration '" + path + "' is a folder: give the walship.toml file in it, e.g. " +
                     (path.ends_with('/') ? path : path + "/") + "walship.toml");
  }
  std::ifstream in(path);
  if (!in) {
    throw UsageError("unable to read the configuration '" + path +
                     "': no such file or not readable; pass --config with an existing walship.toml");
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path, process_env(), check);
}

}  // namespace walship
