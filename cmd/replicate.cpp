#include "lib/replica/replicate.h"

#include <memory>

#include "cmd/commands.h"
#include "cmd/http_listener.h"
#include "cmd/retention_flags.h"
#include "cmd/storage_open.h"
#include "lib/config/config.h"
#include "lib/util/error.h"

namespace walship::cmd {

namespace {

int64_t duration_arg(const std::string& flag, const std::string& text) {
  const std::optional<int64_t> ms = parse_duration_ms(text);
  if (!ms)
    throw UsageError("invalid " + flag + " '" + text + "': give a duration such as 500ms, 1s, 5m, 1h or 7d");
  return *ms;
}

}  // namespace

void add_replicate_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::vector<std::string> positional;
    std::string config;
    std::string dir;
    std::string sync_interval = "1s";
    std::string snapshot_interval = "24h";
    uint32_t checkpoint_pages = 1000;
    uint32_t truncate_pages = 100'000;
    bool enable_wal = false;
    bool no_compaction = false;
    RetentionFlags retention;
    std::string retention_interval = "1h";
    bool no_retention = false;
    std::string exec;
    bool wait = false;
    int workers = 4;
    HttpFlags http;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("replicate", "Ship every committed transaction to the replica, continuously");
  sub->add_option("DB URL", args->positional,
                  "The database and its replica URL(s); with --dir only the URL; none with --config");
  auto* config =
      sub->add_option("-c,--config", args->config, "Replicate the databases listed in this walship.toml");
  sub->add_option("--dir", args->dir,
                  "Replicate every WAL database in this directory (and new ones) under URL/<name>")
      ->excludes(config);
  std::vector<CLI::Option*> options = {
      sub->add_option("--sync-interval", args->sync_interval, "Ship at most this often")
          ->capture_default_str(),
      sub->add_option("--snapshot-interval", args->snapshot_interval,
                      "Write a full snapshot this often (0: never)")
          ->capture_default_str(),
      sub->add_option("--checkpoint-pages", args->checkpoint_pages,
                      "Checkpoint (PASSIVE) past this many WAL pages")
          ->check(CLI::Range(1, 0x7fffffff))
          ->capture_default_str(),
      sub->add_option(
             "--truncate-pages", args->truncate_pages,
             "Checkpoint with TRUNCATE past this many WAL pages (app readers kept PASSIVE from finishing)")
          ->check(CLI::Range(1, 0x7fffffff))
          ->capture_default_str(),
      sub->add_flag("--enable-wal", args->enable_wal, "Switch a rollback-journal database to WAL mode"),
      sub->add_flag("--no-compaction", args->no_compaction, "Do not write L1-L3 compacted deltas"),
      sub->add_option("--retention-interval", args->retention_interval,
                      "Apply the retention policy (prune) this often")
          ->capture_default_str(),
      sub->add_flag("--no-retention", args->no_retention, "Never prune: keep every restore point"),
  };
  for (CLI::Option* option : add_retention_flags(*sub, args->retention)) options.push_back(option);
  for (CLI::Option* option : options) option->excludes(config);
  sub->add_option(
      "--exec", args->exec,
      "Run the app as a child: replicate first, forward signals, ship after it exits, exit with its code");
  sub->add_flag("--wait", args->wait,
                "Wait for a database that does not exist yet and replicate it once the app creates it in "
                "WAL mode (implied by --exec)");
  sub->add_option("--workers", args->workers, "Databases stepped (and uploads) at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  add_http_flags(*sub, args->http);
  sub->footer(
      "Requires WAL mode. walship holds a read transaction, ships whole transactions as L0 deltas\n"
      "within the sync interval, takes over checkpointing, and on SIGTERM/SIGINT ships everything\n"
      "committed before exiting 0. An idle database costs no requests. With --exec or --wait, a\n"
      "database that does not exist yet is replicated from the moment the app creates it.\n"
      "\n"
      "Every --retention-interval, walship prunes each replica it holds the tip of with the\n"
      "--keep-* policy, as walship prune does (--no-retention: never).\n" +
      std::string(k_retention_help) +
      "\n"
      "--http serves /metrics (Prometheus text: per database shipped TXID, lag, bytes, storage\n"
      "requests and errors by backend and op, checkpoints, snapshots, compactions, prunes) and\n"
      "/healthz (JSON per database; 200 when every one started, its last step had no error and its\n"
      "lag is under --max-lag, else 503). With --config, databases with role = \"serve-replica\"\n"
      "are followed in the same process (as walship serve-replica does) and reported there too.\n"
      "\n"
      "Examples:\n"
      "  walship replicate /data/app.db file:///backups/app\n"
      "  walship replicate --exec \"myapp serve\" /data/app.db file:///backups/app\n"
      "  walship replicate --keep-within 2h --keep-daily 30 /data/app.db file:///backups/app\n"
      "  walship replicate --config /etc/walship.toml --http 127.0.0.1:9090\n"
      "  walship replicate --dir /data/tenants file:///backups/tenants");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      ReplicateRun replicate;
      replicate.workers = args->workers;
      if (!args->exec.empty()) replicate.exec_argv = split_command(args->exec);
      replicate.wait_for_databases = args->wait || !args->exec.empty();
      if (!args->config.empty()) {
        if (!args->positional.empty()) {
          throw UsageError("replicate --config takes no DB or URL arguments: list databases in '" +
                           args->config + "'");
        }
        replicate.config = load_config(args->config);
        for (FollowerConfig& f : replicate.config.followers) f.options.quiet = global.quiet;
      } else {
        DatabaseSettings settings;
        settings.sync_interval_ms = duration_arg("--sync-interval", args->sync_interval);
        if (settings.sync_interval_ms <= 0)
          throw UsageError("invalid --sync-interval '0': it must be more than 0");
        settings.replicator.snapshot_interval_ms =
            duration_arg("--snapshot-interval", args->snapshot_interval);
        settings.replicator.checkpoint_pages = args->checkpoint_pages;
        settings.replicator.truncate_pages = args->truncate_pages;
        settings.replicator.enable_wal = args->enable_wal;
        if (args->no_compaction) settings.replicator.compaction.clear();
        settings.replicator.retention = retention_policy_of(args->retention);
        settings.replicator.retention_enabled = !args->no_retention;
        settings.replicator.retention_interval_ms =
            duration_arg("--retention-interval", args->retention_interval);
        if (settings.replicator.retention_interval_ms <= 0)
          throw UsageError("invalid --retention-interval '0': it must be more than 0");
        if (!args->dir.empty()) {
          if (args->positional.size() != 1) {
            throw UsageError(
                "replicate --dir DIR takes exactly one URL: walship replicate --dir /data file:///backups");
          }
          if (!args->dir.starts_with('/'))
            throw UsageError("invalid --dir '" + args->dir + "': give an absolute path");
          replicate.config.directories.push_back({args->dir, {args->positional[0], {}}, settings});
        } else {
          if (args->positional.size() < 2) {
            throw UsageError(
                "replicate needs a database and a replica URL: walship replicate DB URL (or --config FILE)");
          }
          DatabaseConfig db;
          db.path = args->positional[0];
          for (size_t i = 1; i < args->positional.size(); ++i)
            db.replicas.push_back({args->positional[i], {}});
          db.settings = settings;
          replicate.config.databases.push_back(std::move(db));
        }
      }
      StatusBoard board;
      replicate.board = &board;
      const auto listener =
          start_http(args->http, args->config.empty() ? nullptr : &replicate.config, args->config, board);
      return run_replicate(replicate, open_replica);
    };
  });
}

}  // namespace walship::cmd
