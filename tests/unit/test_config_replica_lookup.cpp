#include <doctest.h>

#include <string>

#include "lib/config/replica_lookup.h"
#include "lib/util/error.h"

using namespace walship;

namespace {

ReplicateConfig config_of(const std::string& text) {
  return parse_config(text, "w.toml", [](const std::string&) { return std::optional<std::string>(); });
}

const char* k_two = R"(
[[databases]]
path = "/data/app.db"
keep-daily = 3
[[databases.replicas]]
url = "s3://bucket/app"
endpoint = "http://127.0.0.1:9000"
[[databases.replicas]]
url = "file:///backups/app"

[[databases]]
path = "/data/orders.db"
replicas = ["file:///backups/orders"]

[[databases]]
role = "serve-replica"
path = "/data/copy.db"
replicas = ["file:///backups/app"]

[[directories]]
path = "/data/tenants"
replica = "file:///backups/tenants"
)";

std::string usage_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  FAIL("expected a UsageError");
  return {};
}

}  // namespace

TEST_CASE("a database's replica is found by its path, with its settings and policy") {
  const ReplicateConfig config = config_of(k_two);
  const ConfiguredReplica r = pick_replica(config, "w.toml", "/data/orders.db", "");
  CHECK(r.replica.url == "file:///backups/orders");
  CHECK(r.db_path == "/data/orders.db");
  const ConfiguredReplica s3 = pick_replica(config, "w.toml", "/data/./app.db", "1");
  CHECK(s3.replica.url == "s3://bucket/app");
  CHECK(s3.replica.settings.at("endpoint") == "http://127.0.0.1:9000");
  CHECK(s3.settings.replicator.retention.keep_daily == 3);
  CHECK(pick_replica(config, "w.toml", "/data/app.db", "file:///backups/app").replica.url ==
        "file:///backups/app");
  CHECK(pick_replica(config, "w.toml", "/data/app.db", "2").replica.url == "file:///backups/app");
}

TEST_CASE("a database of a [[directories]] entry is under <url>/<file name>") {
  const ReplicateConfig config = config_of(k_two);
  const std::vector<ConfiguredReplica> found = replicas_of(config, "/data/tenants/acme.db");
  REQUIRE(found.size() == 1);
  CHECK(found[0].replica.url == "file:///backups/tenants/acme.db");
  CHECK(replicas_of(config, "/data/tenants/sub/acme.db").empty());
  CHECK(replicas_of(config, "/data/copy.db").empty());  // followed, not replicated
}

TEST_CASE("a missing, ambiguous or unknown choice is one clear line listing the candidates") {
  const ReplicateConfig config = config_of(k_two);
  CHECK(usage_error([&] { pick_replica(config, "w.toml", "/data/app.db", ""); }) ==
        "database '/data/app.db' has 2 replicas in w.toml (1: s3://bucket/app, 2: file:///backups/app): pick "
        "one with --replica URL or --replica N");
  CHECK(usage_error([&] { pick_replica(config, "w.toml", "/data/app.db", "3"); }) ==
        "invalid --replica '3': database '/data/app.db' has these replicas in w.toml: 1: s3://bucket/app, 2: "
        "file:///backups/app");
  CHECK(usage_error([&] { pick_replica(config, "w.toml", "/data/nope.db", ""); }) ==
        "database '/data/nope.db' is not in w.toml: give its path as the file lists it, or a replica URL "
        "instead of --config");
  CHECK(
      usage_error([&] { pick_replica(config, "w.toml", "", ""); }) ==
      "w.toml lists several databases (/data/app.db, /data/orders.db, /data/tenants/*): give the database's "
      "path");
  const ReplicateConfig one = config_of("[[databases]]\npath = \"/a.db\"\nreplicas = [\"file:///r\"]\n");
  CHECK(pick_replica(one, "w.toml", "", "").replica.url == "file:///r");
}

TEST_CASE("every replica of the file, for prune --config and status") {
  const ReplicateConfig config = config_of(k_two);
  const std::vector<ConfiguredReplica> all = configured_replicas(config, [](const std::string& dir) {
    CHECK(dir == "/data/tenants");
    return std::vector<std::string>{"a.db", "b.db"};
  });
  std::vector<std::string> urls;
  for (const ConfiguredReplica& r : all) urls.push_back(r.replica.url);
  CHECK(urls == std::vector<std::string>{"s3://bucket/app", "file:///backups/app", "file:///backups/orders",
                                         "file:///backups/tenants/a.db", "file:///backups/tenants/b.db"});
  CHECK(all[3].db_path == "/data/tenants/a.db");
}

TEST_CASE("the default config: $WALSHIP_CONFIG, else /etc/walship/walship.toml when it exists") {
  auto env_with = [](std::optional<std::string> value) {
    return [value](const std::string& name) { return name == "WALSHIP_CONFIG" ? value : std::nullopt; };
  };
  auto exists = [](bool yes) { return [yes](const std::string&) { return yes; }; };
  CHECK(default_config_path(env_with("/x.toml"), exists(true)) == "/x.toml");
  CHECK(default_config_path(env_with(std::nullopt), exists(true)) == "/etc/walship/walship.toml");
  CHECK(default_config_path(env_with(std::nullopt), exists(false)) == "");
  CHECK(default_config_path(env_with(""), exists(false)) == "");
}
