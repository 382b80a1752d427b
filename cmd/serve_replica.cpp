#include <memory>

#include "cmd/commands.h"
#include "cmd/http_listener.h"
#include "cmd/option_flags.h"
#include "cmd/storage_open.h"
#include "lib/config/config.h"
#include "lib/replica/follower.h"
#include "lib/replica/replicate.h"
#include "lib/util/error.h"
#include "lib/util/log.h"
#include "lib/util/time.h"

namespace walship::cmd {

void add_serve_replica_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::string url;
    FollowOptions options;
    OptionFlags flags;
    HttpFlags http;
    std::string config;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "serve-replica",
      "Keep a live local copy of a replica that readers open read-only, transaction by transaction");
  sub->add_option("URL", args->url, "The replica: s3://, gs://, sftp://, file:///path (none with --config)");
  sub->add_option("PATH", args->options.db_path,
                  "The local database (restored first if missing; none with --config)");
  CLI::Option* config = sub->add_option(
      "-c,--config", args->config,
      "Follow the databases with role = \"serve-replica\" of this walship.toml, a thread each");
  const std::vector<CLI::Option*> per_database = args->flags.add(*sub, k_scope_follow);
  for (CLI::Option* option : per_database) option->excludes(config);
  add_http_flags(*sub, args->http);
  sub->footer(
      "Each delta is applied in ONE SQLite write transaction (pages and size together) after its\n"
      "chain and whole-database checksum are checked, so a reader that opens PATH read-only always\n"
      "sees a whole transaction of the writer. serve-replica must be the only writer of PATH: it\n"
      "refuses a database walship replicate or another serve-replica works on. SIGTERM/SIGINT stop\n"
      "it between transactions (exit 0); a restart resumes from where PATH is.\n"
      "\n"
      "With --config, the databases of a walship.toml with role = \"serve-replica\" (each with its\n"
      "one replica and its own poll-interval, list-interval...) are followed in one process, and\n"
      "--http reports them all; the file's replicated databases are left to walship replicate\n"
      "--config, which follows these too. A follower whose replica is empty or unreachable at\n"
      "start keeps trying there (its error is on /healthz) instead of exiting.\n"
      "\n"
      "Examples:\n"
      "  walship serve-replica file:///backups/app /data/replica.db\n"
      "  walship serve-replica --poll-interval 100ms --http 127.0.0.1:9090 gs://bucket/app /data/replica.db\n"
      "  walship serve-replica --config /etc/walship/followers.toml --http 127.0.0.1:9090\n"
      "  sqlite3 'file:/data/replica.db?mode=ro' 'SELECT count(*) FROM orders'");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      if (!args->config.empty()) {
        if (!args->url.empty() || !args->options.db_path.empty()) {
          throw UsageError("serve-replica --config takes no URL or PATH: list the followed databases in '" +
                           args->config + "' with role = \"serve-replica\"");
        }
        ReplicateRun follow;
        follow.config = load_config(args->config, replica_setting_check());
        follow.config.databases.clear();
        follow.config.directories.clear();
        if (follow.config.followers.empty()) {
          throw UsageError(args->config +
                           ": no [[databases]] with role = \"serve-replica\": nothing to follow (walship "
                           "replicate --config runs the replicated ones)");
        }
        for (FollowerConfig& f : follow.config.followers) f.options.quiet = global.quiet;
        StatusBoard board;
        follow.board = &board;
        const auto listener = start_http(args->http, &follow.config, args->config, board);
        return run_replicate(follow, open_replica);
      }
      if (args->url.empty() || args->options.db_path.empty()) {
        throw UsageError(
            "serve-replica needs a replica URL and a database path: walship serve-replica URL PATH (or "
            "--config FILE)");
      }
      FollowOptions& options = args->options;
      options.quiet = global.quiet;
      for (const auto& [name, text] : args->flags.given())
        apply_follow_option(options, name, text, "--" + name);
      const auto storage = open_replica(args->url);
      StatusBoard board;
      FollowMonitor& monitor = board.add_follower();
      board.set_ready();
      const auto listener = start_http(args->http, nullptr, "", board);
      return run_serve_replica(options, *storage, monitor);
    };
  });
}

}  // namespace walship::cmd
