#include "lib/replica/prune.h"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/option_flags.h"
#include "cmd/retention_flags.h"
#include "cmd/storage_open.h"
#include "lib/util/error.h"
#include "lib/util/log.h"

namespace walship::cmd {

namespace {

// Every replica of walship.toml (or of its database `db`), each with its
// database's policy unless --keep-* flags were given. A failure is reported
// and the others still pruned; exit 1 if any failed.
int prune_configured(const std::string& config_path, const ConfigFlags& flags, const std::string& db,
                     PruneOptions options, bool use_flags, bool verbose) {
  const ReplicateConfig config = load_config(config_path, replica_setting_check());
  std::vector<ConfiguredReplica> replicas;
  if (!db.empty() || !flags.replica.empty()) {
    replicas.push_back(pick_replica(config, config_path, normal_db_path(db), flags.replica));
  } else {
    replicas = configured_replicas(config, directory_database_files);
  }
  int code = 0;
  for (const ConfiguredReplica& r : replicas) {
    const std::string url = redact_url(r.replica.url);
    if (!use_flags && !r.settings.replicator.retention_enabled) {
      std::printf("%s (%s): retention = false in %s: not pruned\n", r.db_path.c_str(), url.c_str(),
                  config_path.c_str());
      continue;
    }
    if (!use_flags) options.policy = r.settings.replicator.retention;
    try {
      const auto storage = open_replica(r.replica.url, r.replica.settings);
      std::printf("%s (%s):\n", r.db_path.c_str(), url.c_str());
      const PruneResult result = run_prune(options, *storage);
      const std::string out = render_prune(result, options.policy, options.dry_run, verbose);
      std::fwrite(out.data(), 1, out.size(), stdout);
    } catch (const Error& e) {
      log(LogLevel::error, "unable to prune a replica",
          {{"db", r.db_path}, {"replica", url}, {"error", e.what()}});
      code = static_cast<int>(ExitCode::failure);
    }
    std::fflush(stdout);
  }
  return code;
}

}  // namespace

void add_prune_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::string url;
    RetentionFlags flags;
    PruneOptions options;
    ConfigFlags config;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("prune", "Thin out old restore points and delete what no kept point needs");
  sub->add_option("URL", args->url,
                  "The replica: file:///path, s3://bucket/prefix, gs://bucket/prefix, sftp://user@host/path "
                  "or /abs/path; with --config, a database's path (default: every replica of the file)");
  add_config_flags(*sub, args->config);
  add_retention_flags(*sub, args->flags);
  sub->add_flag("-n,--dry-run", args->options.dry_run, "Print what would be deleted and why; delete nothing");
  sub->footer(retention_help() +
              "\n"
              "Prune deletes only objects no kept point's restore chain uses, one at a time, in an order\n"
              "that is safe to kill at any moment: every kept point stays restorable. A replica with a\n"
              "broken chain is left alone (run walship verify). Safe to run while replicate writes.\n"
              "\n"
              "With --config FILE (default: $WALSHIP_CONFIG, else /etc/walship/walship.toml when it exists\n"
              "and no URL is given) and no database path, every replica of every replicated database of\n"
              "the file is pruned with that database's keep-* policy (--keep-* flags override it); one\n"
              "that fails is reported and the others still pruned (exit 1). A database's path (and\n"
              "--replica URL or N) prunes only its replicas.\n"
              "\n"
              "Examples:\n"
              "  walship prune --dry-run file:///backups/app\n"
              "  walship prune file:///backups/app\n"
              "  walship prune --keep-within 2h --keep-daily 14 file:///backups/app\n"
              "  walship prune --keep-last 10 --keep-weekly 8 file:///backups/cron-snapshots\n"
              "  walship prune --quiet --config /etc/walship/walship.toml");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      const bool use_flags = !args->flags.given().empty();
      args->options.policy = retention_policy_of(args->flags);
      const bool verbose = global.verbose > 0;
      const std::string config_path = config_path_for(args->config, args->url);
      if (!config_path.empty()) {
        return prune_configured(config_path, args->config, args->url, args->options, use_flags, verbose);
      }
      const ChosenReplica replica = choose_replica(args->config, args->url, "prune");
      const PruneResult result = run_prune(args->options, *replica.storage);
      const std::string out = render_prune(result, args->options.policy, args->options.dry_run, verbose);
      std::fwrite(out.data(), 1, out.size(), stdout);
      return 0;
    };
  });
}

}  // namespace walship::cmd
