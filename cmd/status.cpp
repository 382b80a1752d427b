#include <algorithm>
#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/option_flags.h"
#include "cmd/storage_open.h"
#include "lib/config/config.h"
#include "lib/config/option_defs.h"
#include "lib/replica/replica_status.h"
#include "lib/util/error.h"
#include "lib/util/time.h"

namespace walship::cmd {

void add_status_command(CLI::App& app, const GlobalOptions& /*global*/, Runner& run) {
  struct Args {
    std::vector<std::string> databases;
    ConfigFlags config;
    std::string max_lag = "10s";
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "status", "Show how far each replica of each database is behind it, without a running walship");
  sub->add_option("DB", args->databases,
                  "Databases of walship.toml to show (default: every replicated database of the file)");
  add_config_flags(*sub, args->config);
  sub->add_option("--max-lag", args->max_lag, "A replica lagging more than this is unhealthy")
      ->capture_default_str();
  sub->add_flag("--json", args->json, "Print JSON for scripts");
  sub->footer(
      "For each replica of each database: LOCAL TXID is the last TXID this node shipped there (from\n"
      "DB-walship/, '-' when walship has not replicated the database here), REPLICA TXID the newest\n"
      "on the replica and LAST SHIP its commit time (one LIST and one small read per replica). LAG\n"
      "counts the transactions in the WAL not shipped yet and, when there are some, the time since\n"
      "the last ship (an upper bound of how long they waited).\n"
      "STATUS is ok, lagging (more than --max-lag), behind (the replica lacks TXIDs this node\n"
      "shipped: another writer, or objects lost), empty (nothing there yet) or failing (the replica\n"
      "could not be read).\n"
      "A line under each row says who holds the replica's lease (held by host pid N, released,\n"
      "expired, or free; one more LIST and read).\n"
      "\n"
      "The databases and their replicas (with options and credentials) come from --config FILE\n"
      "(default: $WALSHIP_CONFIG, else /etc/walship/walship.toml).\n"
      "\n"
      "Exit codes: 0 every replica ok, 1 otherwise, 2 usage or config error.\n"
      "\n"
      "Examples:\n"
      "  walship status --config /etc/walship/walship.toml\n"
      "  walship status --config /etc/walship/walship.toml /data/app.db --json | jq '.replicas[].status'");
  sub->callback([args, &run] {
    run = [args] {
      const std::optional<int64_t> max_lag = parse_duration_ms(args->max_lag);
      if (!max_lag || *max_lag <= 0) {
        throw UsageError("invalid --max-lag '" + args->max_lag + "': give a duration such as 10s, 5m or 1h");
      }
      const std::string config_path = config_path_for(args->config, "");
      if (config_path.empty()) {
        throw UsageError(
            "status needs walship.toml: pass --config FILE (or set $WALSHIP_CONFIG) listing the databases");
      }
      const ReplicateConfig config = load_config(config_path, replica_setting_check());
      std::vector<ConfiguredReplica> replicas;
      if (args->databases.empty()) {
        replicas = configured_replicas(config, directory_database_files);
      } else {
        for (const std::string& db : args->databases) {
          if (!args->config.replica.empty()) {
            replicas.push_back(pick_replica(config, config_path, normal_db_path(db), args->config.replica));
            continue;
          }
          std::vector<ConfiguredReplica> found = replicas_of(config, normal_db_path(db));
          if (found.empty()) {
            throw UsageError("database '" + db + "' is not in " + config_path +
                             ": give its path as the file lists it");
          }
          replicas.insert(replicas.end(), found.begin(), found.end());
        }
      }
      if (replicas.empty()) throw UsageError(config_path + " lists no replicated database: nothing to show");
      std::vector<ReplicaProbe> probes;
      for (const ConfiguredReplica& r : replicas) {
        try {
          const auto storage = open_replica(r.replica.url, r.replica.settings);
          probes.push_back(probe_replica(r.db_path, *storage));
        } catch (const Error& e) {
          ReplicaProbe failed;
          failed.db = r.db_path;
          failed.replica = redact_url(r.replica.url);
          failed.error = e.what();
          probes.push_back(failed);
        }
      }
      bool healthy = false;
      const std::string out = args->json ? render_status_json(probes, now_ms(), *max_lag, healthy)
                                         : render_status_table(probes, now_ms(), *max_lag, healthy);
      std::fwrite(out.data(), 1, out.size(), stdout);
      return static_cast<int>(healthy ? ExitCode::ok : ExitCode::failure);
    };
  });
}

}  // namespace walship::cmd
