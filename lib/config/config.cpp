#include "lib/config/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "lib/util/error.h"
#include "lib/util/listen_address.h"

namespace walship {

namespace {

// Keys of [defaults], [[databases]] and [[directories]] that set options.
constexpr std::string_view k_option_keys[] = {
    "sync-interval",      "snapshot-interval", "checkpoint-pages", "truncate-pages", "enable-wal",
    "compaction",         "l1-span",           "l2-span",          "l3-span",        "retention",
    "retention-interval", "keep-within",       "keep-last",        "keep-minutely",  "keep-hourly",
    "keep-daily",         "keep-weekly",       "keep-monthly",
};

// Keys of [defaults] and of role = "serve-replica" entries that set follower
// options; "checkpoint-pages" is one of both kinds.
constexpr std::string_view k_follow_keys[] = {"poll-interval", "list-interval", "parallelism",
                                              "checkpoint-pages"};

bool is_option_key(std::string_view key) {
  return std::find(std::begin(k_option_keys), std::end(k_option_keys), key) != std::end(k_option_keys);
}
bool is_follow_key(std::string_view key) {
  return std::find(std::begin(k_follow_keys), std::end(k_follow_keys), key) != std::end(k_follow_keys);
}

class Parser {
 public:
  Parser(std::string name, const EnvLookup& env) : m_name(std::move(name)), m_env(env) {}

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
  std::string setting_of(const toml::node& node, const std::string& key) const {
    if (const auto* s = node.as_string()) return expand(s->get(), node.source());
    if (const auto* i = node.as_integer()) return std::to_string(i->get());
    if (const auto* b = node.as_boolean()) return b->get() ? "true" : "false";
    fail(node.source(), "'" + key + "' must be a string, a number or a boolean");
  }

  int64_t duration_of(const toml::node& node, const std::string& key) const {
    if (const auto* i = node.as_integer()) {
      if (i->get() < 0) fail(node.source(), "'" + key + "' must not be negative");
      return i->get() * 1000;
    }
    const std::string text = string_of(node, key);
    const std::optional<int64_t> ms = parse_duration_ms(text);
    if (!ms)
      fail(node.source(),
           "'" + key + "' = '" + text + "' is not a duration (use e.g. 500ms, 1s, 5m, 1h, 7d)");
    return *ms;
  }

  uint32_t count_of(const toml::node& node, const std::string& key) const {
    const auto* i = node.as_integer();
    if (!i || i->get() < 1 || i->get() > 0x7fffffff)
      fail(node.source(), "'" + key + "' must be a positive integer");
    return static_cast<uint32_t>(i->get());
  }

  // Applies an option key; false if `key` is not one.
  bool apply_option(DatabaseSettings& settings, const std::string& key, const toml::node& node) const {
    ReplicatorOptions& r = settings.replicator;
    if (key == "sync-interval") {
      settings.sync_interval_ms = duration_of(node, key);
      if (settings.sync_interval_ms <= 0) fail(node.source(), "'sync-interval' must be more than 0");
    } else if (key == "snapshot-interval") {
      r.snapshot_interval_ms = duration_of(node, key);
    } else if (key == "checkpoint-pages") {
      r.checkpoint_pages = count_of(node, key);
    } else if (key == "truncate-pages") {
      r.truncate_pages = count_of(node, key);
    } else if (key == "enable-wal") {
      const auto* b = node.as_boolean();
      if (!b) fail(node.source(), "'enable-wal' must be true or false");
      r.enable_wal = b->get();
    } else if (key == "compaction") {
      const auto* b = node.as_boolean();
      if (!b) fail(node.source(), "'compaction' must be true or false");
      if (!b->get()) r.compaction.clear();
    } else if (key == "l1-span" || key == "l2-span" || key == "l3-span") {
      const int level = key[1] - '0';
      const int64_t span = duration_of(node, key);
      if (span <= 0) fail(node.source(), "'" + key + "' must be more than 0");
      for (CompactionLevel& l : r.compaction) {
        if (l.level == level) l.span_ms = span;
      }
    } else if (key == "retention") {
      const auto* b = node.as_boolean();
      if (!b) fail(node.source(), "'retention' must be true or false");
      r.retention_enabled = b->get();
    } else if (key == "retention-interval") {
      r.retention_interval_ms = duration_of(node, key);
      if (r.retention_interval_ms <= 0) fail(node.source(), "'retention-interval' must be more than 0");
    } else if (key.starts_with("keep-")) {
      // The first keep-* rule replaces the built-in default policy; rules
      // from [defaults] are inherited one by one.
      if (!settings.custom_retention) {
        r.retention = RetentionPolicy{};
        settings.custom_retention = true;
      }
      if (key == "keep-within") {
        r.retention.keep_within_ms = duration_of(node, key);
        if (r.retention.keep_within_ms <= 0) fail(node.source(), "'keep-within' must be more than 0");
      } else {
        const auto n = static_cast<int>(count_of(node, key));
        if (key == "keep-last")
          r.retention.keep_last = n;
        else if (key == "keep-minutely")
          r.retention.keep_minutely = n;
        else if (key == "keep-hourly")
          r.retention.keep_hourly = n;
        else if (key == "keep-daily")
          r.retention.keep_daily = n;
        else if (key == "keep-weekly")
          r.retention.keep_weekly = n;
        else if (key == "keep-monthly")
          r.retention.keep_monthly = n;
        else
          return false;
      }
    } else {
      return false;
    }
    return true;
  }

  // Applies a follower option key; false if `key` is not one.
  bool apply_follow_option(FollowOptions& options, const std::string& key, const toml::node& node) const {
    if (key == "poll-interval" || key == "list-interval") {
      const int64_t ms = duration_of(node, key);
      if (ms <= 0) fail(node.source(), "'" + key + "' must be more than 0");
      (key == "poll-interval" ? options.poll_interval_ms : options.list_interval_ms) = ms;
    } else if (key == "checkpoint-pages") {
      options.checkpoint_pages = count_of(node, key);
    } else if (key == "parallelism") {
      const uint32_t n = count_of(node, key);
      if (n > 64) fail(node.source(), "'parallelism' must be from 1 to 64");
      options.parallelism = static_cast<int>(n);
    } else {
      return false;
    }
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
      } else if (!apply_follow_option(follower.options, key, v)) {
        if (is_option_key(key)) {
          fail(v.source(), "'" + key +
                               "' does not apply to role = \"serve-replica\" (its keys: path, role, replica, "
                               "replicas, poll-interval, list-interval, checkpoint-pages, parallelism)");
        }
        fail(v.source(),
             "unknown key '" + key +
                 "' in a [[databases]] entry with role = \"serve-replica\" (known: path, role, "
                 "replica, replicas, poll-interval, list-interval, checkpoint-pages, parallelism)");
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
                            std::initializer_list<std::string_view> extra) const {
    std::string known;
    auto add = [&](std::string_view k) { known += (known.empty() ? "" : ", ") + std::string(k); };
    for (std::string_view k : extra) add(k);
    for (std::string_view k : k_option_keys) add(k);
    fail(node.source(), "unknown key '" + key + "' in " + where + " (known: " + known + ")");
  }

  ReplicaConfig replica_of(const toml::node& node, const std::string& where) const {
    ReplicaConfig replica;
    if (node.is_string()) {
      replica.url = string_of(node, "replicas");
    } else if (const auto* table = node.as_table()) {
      for (const auto& [k, v] : *table) {
        const std::string key(k.str());
        if (key == "url") {
          replica.url = string_of(v, key);
        } else {
          replica.settings[key] = setting_of(v, key);
        }
      }
      if (replica.url.empty()) fail(node.source(), "a replica in " + where + " has no 'url'");
    } else {
      fail(node.source(), "a replica must be a URL string or a table with 'url'");
    }
    if (replica.url.empty()) fail(node.source(), "empty replica URL in " + where);
    return replica;
  }

  ReplicateConfig parse(const toml::table& root) const {
    ReplicateConfig config;
    DatabaseSettings defaults;
    FollowOptions follow_defaults;
    if (const toml::node* node = root.get("defaults")) {
      const auto* table = node->as_table();
      if (!table) fail(node->source(), "'defaults' must be a table: [defaults]");
      for (const auto& [k, v] : *table) {
        const std::string key(k.str());
        const bool replicate_key = apply_option(defaults, key, v);
        const bool follow_key = apply_follow_option(follow_defaults, key, v);
        if (!replicate_key && !follow_key)
          unknown(v, key, "[defaults]", {"poll-interval", "list-interval", "parallelism"});
      }
    }
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
        config.max_lag_ms = duration_of(v, key);
        if (*config.max_lag_ms <= 0) fail(v.source(), "'max-lag' must be more than 0");
      } else if (key != "defaults" && key != "databases" && key != "directories") {
        fail(v.source(),
             "unknown key '" + key + "' (known: http, max-lag, [defaults], [[databases]], [[directories]])");
      }
    }
    if (const toml::node* node = root.get("databases")) {
      const auto* array = node->as_array();
      if (!array) fail(node->source(), "'databases' must be an array of tables: [[databases]]");
      for (const toml::node& entry : *array) {
        const auto* table = entry.as_table();
        if (!table) fail(entry.source(), "each entry of 'databases' must be a table: [[databases]]");
        if (role_of(*table) == "serve-replica") {
          config.followers.push_back(follower_of(*table, entry, follow_defaults));
          continue;
        }
        DatabaseConfig db;
        db.settings = defaults;
        for (const auto& [k, v] : *table) {
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
        if (!db.path.starts_with('/'))
          fail(entry.source(), "database path '" + db.path + "' must be absolute");
        if (db.replicas.empty()) {
          fail(entry.source(), "database '" + db.path + "' has no replica: add replicas = [\"URL\"]");
        }
        config.databases.push_back(std::move(db));
      }
    }
    if (const toml::node* node = root.get("directories")) {
      const auto* array = node->as_array();
      if (!array) fail(node->source(), "'directories' must be an array of tables: [[directories]]");
      for (const toml::node& entry : *array) {
        const auto* table = entry.as_table();
        if (!table) fail(entry.source(), "each entry of 'directories' must be a table: [[directories]]");
        DirectoryConfig dir;
        dir.settings = defaults;
        for (const auto& [k, v] : *table) {
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
        config.directories.push_back(std::move(dir));
      }
    }
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
};

}  // namespace

std::optional<int64_t> parse_duration_ms(std::string_view text) {
  size_t i = 0;
  int64_t value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (value > 1'000'000'000) return std::nullopt;
    value = value * 10 + (text[i] - '0');
    ++i;
  }
  if (i == 0) return std::nullopt;
  const std::string_view unit = text.substr(i);
  if (unit == "ms") return value;
  if (unit == "s" || unit.empty()) return value * 1000;
  if (unit == "m") return value * 60'000;
  if (unit == "h") return value * 3'600'000;
  if (unit == "d") return value * 86'400'000;
  return std::nullopt;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  };
}

ReplicateConfig parse_config(std::string_view text, const std::string& name, const EnvLookup& env) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw UsageError(name + ":" + std::to_string(e.source().begin.line) + ": " +
                     std::string(e.description()));
  }
  return Parser(name, env).parse(root);
}

ReplicateConfig load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw UsageError("unable to read the configuration '" + path +
                     "': no such file or not readable; pass --config with an existing walship.toml");
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path, process_env());
}

}  // namespace walship
