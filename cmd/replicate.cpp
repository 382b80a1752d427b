#include "lib/replica/replicate.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>

#include "backends/cloud/metadata_watcher.h"
#include "cmd/commands.h"
#include "cmd/http_listener.h"
#include "cmd/option_flags.h"
#include "cmd/retention_flags.h"
#include "cmd/storage_open.h"
#include "lib/config/config.h"
#include "lib/replica/control_socket.h"
#include "lib/util/error.h"

namespace walship::cmd {

namespace {

// POST /sync's map (http_listener.h): a database of the configuration (by
// its absolute path, as the loop names it) or of a replicated directory, to
// where its replicate listens.
ControlSocketOf control_sockets(const ReplicateConfig& config) {
  std::map<std::string, std::string> sockets;
  const auto absolute = [](const std::string& path) {
    return std::filesystem::absolute(path).lexically_normal().string();
  };
  for (const DatabaseConfig& db : config.databases) {
    const std::string path = absolute(db.path);
    sockets[path] =
        db.settings.control_socket.empty() ? default_control_socket_path(path) : db.settings.control_socket;
  }
  std::vector<std::string> directories;
  for (const DirectoryConfig& dir : config.directories) directories.push_back(absolute(dir.path));
  return [sockets, directories, absolute](const std::string& db) -> std::optional<std::string> {
    const std::string path = absolute(db);
    if (const auto it = sockets.find(path); it != sockets.end()) return it->second;
    const std::string dir = std::filesystem::path(path).parent_path().string();
    if (std::find(directories.begin(), directories.end(), dir) != directories.end())
      return default_control_socket_path(path);
    return std::nullopt;
  };
}

}  // namespace

void add_replicate_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::vector<std::string> positional;
    std::string config;
    std::string dir;
    OptionFlags options;  // per-database options and the --keep-* rules
    OptionFlags process;  // --workers, --take-over, --shutdown-timeout, the preemption notice's
    std::string exec;
    bool wait = false;
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
  std::vector<CLI::Option*> options = args->options.add(*sub, k_scope_replicate);
  for (CLI::Option* option : add_retention_flags(*sub, args->options)) options.push_back(option);
  for (CLI::Option* option : options) option->excludes(config);
  sub->add_option(
      "--exec", args->exec,
      "Run the app as a child: replicate first, forward signals, ship after it exits, exit with its code");
  sub->add_flag("--wait", args->wait,
                "Wait for a database that does not exist yet and replicate it once the app creates it in "
                "WAL mode (implied by --exec)");
  args->process.add_one(*sub, "workers");
  args->process.add_one(*sub, "take-over");
  args->process.add_one(*sub, "shutdown-timeout");
  args->process.add_one(*sub, "preemption-notice");
  args->process.add_one(*sub, "notice-sync-interval");
  args->process.add_one(*sub, "on-notice");
  add_http_flags(*sub, args->http);
  sub->footer(
      "Requires WAL mode. walship holds a read transaction, ships whole transactions as L0 deltas\n"
      "within the sync interval, takes over checkpointing, and on SIGTERM/SIGINT ships everything\n"
      "committed before exiting 0. An idle database costs no requests. With --exec or --wait, a\n"
      "database that does not exist yet is replicated from the moment the app creates it.\n"
      "\n"
      "One writer per replica: replicate holds a lease in each replica (renewed every third of\n"
      "--lease-ttl, released on a clean stop). A replica whose lease another live writer holds is\n"
      "not written: replicate waits up to one TTL for the lease to expire and otherwise exits 4,\n"
      "naming the holder. --take-over takes it anyway and fences the old writer off: nothing it\n"
      "still writes is ever restored, and it exits 4 (its --exec app stopped). A node whose\n"
      "replica moved on without it (it came back with an old disk) also exits 4: restore it with\n"
      "walship restore --fast-forward, or pass --take-over to make its data the newest.\n"
      "\n"
      "Every --retention-interval, walship prunes each replica it holds the tip of with the\n"
      "--keep-* policy, as walship prune does (--no-retention: never).\n"
      "\n"
      "Preemption notices: with --preemption-notice auto (the default) replicate reads the machine's\n"
      "DMI strings once at start and, on AWS, GCE or Azure, watches the metadata service for the\n"
      "notice the cloud gives before it stops a spot or preemptible machine (AWS spot instance-action\n"
      "and rebalance recommendation over IMDSv2, GCE instance/preempted, Azure Scheduled Events\n"
      "Preempt); elsewhere it sends no request at all. On a notice it logs a warning with the\n"
      "announced time, ships every database at once and then every --notice-sync-interval until it\n"
      "stops, checkpoints, runs --on-notice once and counts it on /metrics\n"
      "(walship_preemption_notices_total). The final ship on SIGTERM is unchanged.\n" +
      retention_help() +
      "\n"
      "--http serves /metrics (Prometheus text: per database shipped TXID, lag, bytes, storage\n"
      "requests and errors by backend and op, checkpoints, snapshots, compactions, prunes) and\n"
      "/healthz (alive: always 200) and /readyz (JSON per database; 200 when every one started, its\n"
      "last step had no error and its lag is under --max-lag, else 503). With --config, databases\n"
      "with role = \"serve-replica\" are followed in the same process (as walship serve-replica\n"
      "does) and reported there too.\n"
      "\n"
      "Examples:\n"
      "  walship replicate /data/app.db file:///backups/app\n"
      "  walship replicate --exec \"myapp serve\" /data/app.db file:///backups/app\n"
      "  walship replicate --keep-within 2h --keep-daily 30 /data/app.db file:///backups/app\n"
      "  walship replicate --config /etc/walship.toml --http 127.0.0.1:9090\n"
      "  walship replicate --on-notice \"/usr/local/bin/drain-node\" /data/app.db file:///backups/app\n"
      "  walship replicate --dir /data/tenants file:///backups/tenants");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      ReplicateRun replicate;
      replicate.workers = k_default_workers;
      std::optional<std::string> notice_mode;
      std::optional<std::string> on_notice;
      std::optional<int64_t> notice_interval;
      for (const auto& [name, text] : args->process.given()) {
        const int64_t value = parse_option_value(option(name), text, "--" + name);
        if (name == "workers") replicate.workers = static_cast<int>(value);
        if (name == "take-over") replicate.take_over = value != 0;
        if (name == "shutdown-timeout") replicate.shutdown_timeout_ms = value;
        if (name == "preemption-notice") notice_mode = text;
        if (name == "notice-sync-interval") notice_interval = value;
        if (name == "on-notice") on_notice = text;
      }
      if (!args->exec.empty()) replicate.exec_argv = split_command(args->exec);
      replicate.wait_for_databases = args->wait || !args->exec.empty();
      if (!args->config.empty()) {
        if (!args->positional.empty()) {
          throw UsageError("replicate --config takes no DB or URL arguments: list databases in '" +
                           args->config + "'");
        }
        replicate.config = load_config(args->config, replica_setting_check());
        for (FollowerConfig& f : replicate.config.followers) f.options.quiet = global.quiet;
      } else {
        DatabaseSettings settings;
        for (const auto& [name, text] : args->options.given())
          apply_replicate_option(settings, name, text, "--" + name);
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
      // The preemption notice: a flag over walship.toml's key over the default.
      if (!notice_mode) notice_mode = replicate.config.preemption_notice;
      if (!notice_interval) notice_interval = replicate.config.notice_sync_interval_ms;
      if (!on_notice) on_notice = replicate.config.on_notice;
      if (notice_interval) replicate.notice_sync_interval_ms = *notice_interval;
      if (on_notice) replicate.on_notice_argv = split_command(*on_notice);
      const NoticeMode mode = parse_notice_mode(notice_mode.value_or("auto")).value_or(NoticeMode::detect);
      if (mode != NoticeMode::off) {
        replicate.notice_watcher = [mode](NoticeCallback notify) {
          return cloud::start_notice_watcher(mode, std::move(notify));
        };
      }
      StatusBoard board;
      replicate.board = &board;
      const auto listener = start_http(args->http, args->config.empty() ? nullptr : &replicate.config,
                                       args->config, board, control_sockets(replicate.config));
      return run_replicate(replicate, open_replica);
    };
  });
}

}  // namespace walship::cmd
