#include <doctest.h>

#include <map>
#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/util/error.h"

using namespace walship;

namespace {

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string config_error(const std::string& text) {
  try {
    parse_config(text, "walship.toml", fake_env({}));
  } catch (const UsageError& e) {
    CHECK(e.code() == ExitCode::usage);
    return e.what();
  }
  FAIL("expected a UsageError for:\n" << text);
  return {};
}

}  // namespace

TEST_CASE("durations take a unit, or are seconds") {
  CHECK(parse_duration_ms("500ms") == 500);
  CHECK(parse_duration_ms("1s") == 1000);
  CHECK(parse_duration_ms("2") == 2000);
  CHECK(parse_duration_ms("5m") == 300'000);
  CHECK(parse_duration_ms("1h") == 3'600'000);
  CHECK(parse_duration_ms("7d") == 604'800'000);
  CHECK(parse_duration_ms("0") == 0);
  CHECK_FALSE(parse_duration_ms(""));
  CHECK_FALSE(parse_duration_ms("1x"));
  CHECK_FALSE(parse_duration_ms("s"));
  CHECK_FALSE(parse_duration_ms("-1s"));
  CHECK_FALSE(parse_duration_ms("1.5s"));
  CHECK_FALSE(parse_duration_ms("99999999999999999s"));
}

TEST_CASE("a configuration lists databases with replicas, defaults and per-database options") {
  const ReplicateConfig config =
      parse_config(R"(
[defaults]
sync-interval = "2s"
snapshot-interval = "6h"

[[databases]]
path = "/data/app.db"
replicas = ["file:///backups/app", "s3://bucket/app"]

[[databases]]
path = "/data/orders.db"
sync-interval = "250ms"
checkpoint-pages = 500
compaction = false
  [[databases.replicas]]
  url = "s3://${BUCKET}/orders"
  region = "${REGION}"
  path-style = true
  part-size = 8

[[directories]]
path = "/data/tenants"
replica = "file:///backups/tenants"
enable-wal = true
l1-span = "30s"
)",
                   "walship.toml", fake_env({{"BUCKET", "b1"}, {"REGION", "eu-west-1"}}));
  REQUIRE(config.databases.size() == 2);
  const DatabaseConfig& app = config.databases[0];
  CHECK(app.path == "/data/app.db");
  REQUIRE(app.replicas.size() == 2);
  CHECK(app.replicas[1].url == "s3://bucket/app");
  CHECK(app.settings.sync_interval_ms == 2000);
  CHECK(app.settings.replicator.snapshot_interval_ms == 6 * 3'600'000);
  CHECK(app.settings.replicator.compaction.size() == 3);

  const DatabaseConfig& orders = config.databases[1];
  CHECK(orders.settings.sync_interval_ms == 250);
  CHECK(orders.settings.replicator.snapshot_interval_ms == 6 * 3'600'000);  // from [defaults]
  CHECK(orders.settings.replicator.checkpoint_pages == 500);
  CHECK(orders.settings.replicator.compaction.empty());
  REQUIRE(orders.replicas.size() == 1);
  CHECK(orders.replicas[0].url == "s3://b1/orders");
  CHECK(orders.replicas[0].settings == std::map<std::string, std::string>{{"region", "eu-west-1"},
                                                                          {"path-style", "true"},
                                                                          {"part-size", "8"}});

  REQUIRE(config.directories.size() == 1);
  CHECK(config.directories[0].path == "/data/tenants");
  CHECK(config.directories[0].replica.url == "file:///backups/tenants");
  CHECK(config.directories[0].settings.replicator.enable_wal);
  CHECK(config.directories[0].settings.replicator.compaction[0].span_ms == 30'000);
}

TEST_CASE("configuration mistakes name the file, the line and what to write") {
  CHECK(config_error("[[databases]]\npath = \"/a.db\"\nreplicas = [\"file:///r\"]\nsync_interval = \"1s\"\n")
            .starts_with("walship.toml:4: unknown key 'sync_interval' in [[databases]] (known: path, role, "
                         "replica, replicas, sync-interval,"));
  CHECK(config_error("[defaults]\nfoo = 1\n[[databases]]\npath = \"/a\"\nreplica = \"/r\"\n")
            .starts_with("walship.toml:2: unknown key 'foo' in [defaults] (known: poll-interval, "
                         "list-interval, parallelism, sync-interval,"));
  CHECK(config_error("[database]\npath = \"/a\"\n") ==
        "walship.toml:1: unknown key 'database' (known: http, max-lag, preemption-notice, "
        "notice-sync-interval, on-notice, [defaults], [[databases]], [[directories]])");
  CHECK(config_error("[[databases]]\npath = \"/a.db\"\n") ==
        "walship.toml:1: database '/a.db' has no replica: add replicas = [\"URL\"]");
  CHECK(config_error("[[databases]]\npath = \"a.db\"\nreplica = \"/r\"\n") ==
        "walship.toml:1: database path 'a.db' must be absolute");
  CHECK(config_error("[[databases]]\npath = \"/a\"\nreplica = \"/r\"\nsync-interval = \"soon\"\n") ==
        "walship.toml:4: invalid sync-interval 'soon': give a duration from 1ms to 36500d such as 500ms, 1s, "
        "5m, 1h or 7d (a bare number is seconds)");
  CHECK(config_error("[[databases]]\npath = \"/a\"\nreplica = \"s3://${NOPE}/x\"\n") ==
        "walship.toml:3: environment variable 'NOPE' is not set (used as ${NOPE})");
  CHECK(config_error("[[databases]]\npath = \"/a\"\nreplica = \"/r\"\ncheckpoint-pages = 0\n") ==
        "walship.toml:4: invalid checkpoint-pages '0': give a whole number from 1 to 2147483647");
  CHECK(config_error("# nothing\n") ==
        "walship.toml: no [[databases]] or [[directories]]: nothing to replicate");
  CHECK(
      config_error("[[databases]]\npath = \"/a\"\nreplica = \"/r\"\n[[databases]]\npath = \"/a\"\nreplica = "
                   "\"/s\"\n") == "walship.toml: database '/a' is listed twice");
  // TOML syntax errors keep toml++'s description and the line.
  CHECK(config_error("[[databases]]\npath = /a\n").starts_with("walship.toml:2: "));
}

TEST_CASE("retention settings: the default policy, keep-* rules replacing it, inherited from [defaults]") {
  const ReplicateConfig config = parse_config(R"(
[defaults]
keep-within = "2h"
keep-daily = 30
retention-interval = "6h"

[[databases]]
path = "/data/a.db"
replicas = ["file:///r/a"]

[[databases]]
path = "/data/b.db"
replicas = ["file:///r/b"]
keep-hourly = 48

[[databases]]
path = "/data/c.db"
replicas = ["file:///r/c"]
retention = false
)",
                                              "walship.toml", fake_env({}));
  REQUIRE(config.databases.size() == 3);
  RetentionPolicy expected;
  expected.keep_within_ms = 2 * 3'600'000;
  expected.keep_daily = 30;
  CHECK(config.databases[0].settings.replicator.retention == expected);
  CHECK(config.databases[0].settings.replicator.retention_interval_ms == 6 * 3'600'000);
  CHECK(config.databases[0].settings.replicator.retention_enabled);
  expected.keep_hourly = 48;
  CHECK(config.databases[1].settings.replicator.retention == expected);
  CHECK(!config.databases[2].settings.replicator.retention_enabled);

  const ReplicateConfig plain = parse_config("[[databases]]\npath = \"/a.db\"\nreplicas = [\"file:///r\"]\n",
                                             "walship.toml", fake_env({}));
  CHECK(plain.databases[0].settings.replicator.retention == default_retention_policy());
  CHECK(plain.databases[0].settings.replicator.retention_interval_ms == 3'600'000);

  CHECK(config_error("[defaults]\nkeep-daily = 0\n") ==
        "walship.toml:2: invalid keep-daily '0': give a whole number from 1 to 2147483647");
  CHECK(config_error("[defaults]\nkeep-within = \"soon\"\n")
            .starts_with("walship.toml:2: invalid keep-within 'soon': give a duration"));
  CHECK(config_error("[defaults]\nretention = 1\n") ==
        "walship.toml:2: invalid retention '1': expected exactly true or false");
}

TEST_CASE("roles: replicated and followed databases in one file, http and max-lag for the process") {
  const ReplicateConfig config = parse_config(R"(
http = "127.0.0.1:9090"
max-lag = "3s"

[defaults]
poll-interval = "200ms"
sync-interval = "2s"
checkpoint-pages = 500

[[databases]]
path = "/data/app.db"
replicas = ["file:///backups/app"]

[[databases]]
role = "serve-replica"
path = "/data/replica.db"
list-interval = "30s"
parallelism = 8
  [[databases.replicas]]
  url = "s3://bucket/app"
  region = "eu-west-1"

[[databases]]
path = "/data/other.db"
role = "replicate"
replica = "file:///backups/other"
)",
                                              "walship.toml", fake_env({}));
  CHECK(config.http == "127.0.0.1:9090");
  CHECK(config.max_lag_ms == 3000);
  REQUIRE(config.databases.size() == 2);
  CHECK(config.databases[0].settings.sync_interval_ms == 2000);
  CHECK(config.databases[0].settings.replicator.checkpoint_pages == 500);
  CHECK(config.databases[1].path == "/data/other.db");
  REQUIRE(config.followers.size() == 1);
  const FollowerConfig& f = config.followers[0];
  CHECK(f.options.db_path == "/data/replica.db");
  CHECK(f.replica.url == "s3://bucket/app");
  CHECK(f.replica.settings.at("region") == "eu-west-1");
  CHECK(f.options.poll_interval_ms == 200);
  CHECK(f.options.list_interval_ms == 30'000);
  CHECK(f.options.checkpoint_pages == 500);
  CHECK(f.options.parallelism == 8);

  const ReplicateConfig only =
      parse_config("[[databases]]\nrole = \"serve-replica\"\npath = \"/f.db\"\nreplicas = [\"file:///r\"]\n",
                   "w.toml", fake_env({}));
  CHECK(only.databases.empty());
  CHECK(only.followers.size() == 1);
  CHECK(only.http.empty());
  CHECK_FALSE(only.max_lag_ms);
}

TEST_CASE("role mistakes name the line: unknown role, two replicas for a follower, keys of the other role") {
  CHECK(config_error("[[databases]]\npath = \"/a\"\nrole = \"mirror\"\nreplica = \"/r\"\n") ==
        "walship.toml:3: unknown role 'mirror' (known: replicate, serve-replica)");
  CHECK(config_error("[[databases]]\nrole = \"serve-replica\"\npath = \"/a\"\nreplicas = [\"file:///r\", "
                     "\"file:///s\"]\n") ==
        "walship.toml:1: database '/a' has role = \"serve-replica\" and 2 replicas: a follower follows "
        "exactly one replica (replicas = [\"URL\"])");
  CHECK(config_error("[[databases]]\nrole = \"serve-replica\"\npath = \"/a\"\n") ==
        "walship.toml:1: database '/a' has role = \"serve-replica\" and 0 replicas: a follower follows "
        "exactly one replica (replicas = [\"URL\"])");
  CHECK(
      config_error("[[databases]]\nrole = \"serve-replica\"\npath = \"/a\"\nreplica = \"/r\"\nsync-interval "
                   "= \"1s\"\n")
          .starts_with(
              "walship.toml:5: 'sync-interval' does not apply to role = \"serve-replica\" (its keys: "
              "path, role, replica, replicas, poll-interval,"));
  CHECK(config_error("[[databases]]\nrole = \"serve-replica\"\npath = \"/a\"\nreplica = \"/r\"\nfoo = 1\n")
            .starts_with("walship.toml:5: unknown key 'foo' in a [[databases]] entry with role = "
                         "\"serve-replica\""));
  CHECK(config_error("[[databases]]\npath = \"/a\"\nreplica = \"/r\"\npoll-interval = \"1s\"\n") ==
        "walship.toml:4: 'poll-interval' applies to role = \"serve-replica\" only (this database is "
        "replicated)");
  CHECK(
      config_error("[[databases]]\nrole = \"serve-replica\"\npath = \"/a\"\nreplica = \"/r\"\n[[databases]]\n"
                   "path = \"/a\"\nreplica = \"/s\"\n") == "walship.toml: database '/a' is listed twice");
  CHECK(config_error("http = \"nowhere:80\"\n[[databases]]\npath = \"/a\"\nreplica = \"/r\"\n") ==
        "walship.toml:1: invalid 'http' 'nowhere:80': 'nowhere' is not an IP address; give one, e.g. "
        "127.0.0.1:9090 or [::1]:9090");
  CHECK(config_error("max-lag = \"0s\"\n[[databases]]\npath = \"/a\"\nreplica = \"/r\"\n") ==
        "walship.toml:1: invalid max-lag '0s': it must be more than 0");
}

TEST_CASE("replica settings: an empty value or one the backend refuses is an error naming the line") {
  CHECK(config_error(
            "[[databases]]\npath = \"/a\"\n[[databases.replicas]]\nurl = \"s3://b/p\"\nregion = \"\"\n") ==
        "walship.toml:5: invalid option region='': the value is empty; give one or leave the option out");
  // An empty ${VAR} is an empty value too: it never switches a default off.
  CHECK_THROWS_AS(parse_config("[[databases]]\npath = \"/a\"\n[[databases.replicas]]\nurl = \"s3://b/p\"\n"
                               "insecure-skip-verify = \"${SKIP}\"\n",
                               "walship.toml", fake_env({{"SKIP", ""}})),
                  UsageError);

  // The backends' check sees each setting with how it was written; its
  // message gets the setting's line.
  std::vector<std::string> seen;
  const SettingCheck check = [&seen](const std::string& url, const std::string& name, SettingKind kind,
                                     const std::string& value) {
    seen.push_back(url + " " + name + "=" + value +
                   (kind == SettingKind::integer   ? " integer"
                    : kind == SettingKind::boolean ? " boolean"
                                                   : " string"));
    if (name == "session-token" && kind != SettingKind::string)
      throw UsageError(
          "invalid option session-token=12345 for replica 's3://b/p': give a string (in quotes)");
  };
  const std::string text =
      "[[databases]]\npath = \"/a\"\n[[databases.replicas]]\nurl = \"s3://b/p\"\npart-size = 8388608\n"
      "path-style = true\nregion = \"eu\"\n";
  parse_config(text, "walship.toml", fake_env({}), check);
  CHECK(seen == std::vector<std::string>{"s3://b/p part-size=8388608 integer",
                                         "s3://b/p path-style=true boolean", "s3://b/p region=eu string"});
  try {
    parse_config(text + "session-token = 12345\n", "walship.toml", fake_env({}), check);
    FAIL("expected a UsageError");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()) ==
          "walship.toml:8: invalid option session-token=12345 for replica 's3://b/p': give a string (in "
          "quotes)");
  }
}

TEST_CASE("the preemption notice's keys are the process's, checked like the flags") {
  const ReplicateConfig config = parse_config(
      "preemption-notice = \"gce\"\nnotice-sync-interval = \"250ms\"\non-notice = \"drain --now\"\n"
      "[[databases]]\npath = \"/a.db\"\nreplica = \"/r\"\n",
      "walship.toml", fake_env({}));
  CHECK(config.preemption_notice == "gce");
  CHECK(config.notice_sync_interval_ms == 250);
  CHECK(config.on_notice == "drain --now");
  const ReplicateConfig none =
      parse_config("[[databases]]\npath = \"/a.db\"\nreplica = \"/r\"\n", "w", fake_env({}));
  CHECK_FALSE(none.preemption_notice);
  CHECK_FALSE(none.on_notice);
  CHECK(config_error("preemption-notice = \"ec2\"\n[[databases]]\npath = \"/a\"\nreplica = \"/r\"\n") ==
        "walship.toml:1: invalid preemption-notice 'ec2': expected auto, aws, gce, azure or off");
  CHECK(config_error("on-notice = \"\"\n[[databases]]\npath = \"/a\"\nreplica = \"/r\"\n") ==
        "walship.toml:1: invalid on-notice '': give a command, or leave the option out");
}
