#include "lib/replica/prune.h"

#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/retention_flags.h"
#include "cmd/storage_open.h"

namespace walship::cmd {

void add_prune_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::string url;
    RetentionFlags flags;
    PruneOptions options;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("prune", "Thin out old restore points and delete what no kept point needs");
  sub->add_option("URL", args->url, "The replica: file:///path, or an absolute path")->required();
  add_retention_flags(*sub, args->flags);
  sub->add_flag("-n,--dry-run", args->options.dry_run, "Print what would be deleted and why; delete nothing");
  sub->footer(std::string(k_retention_help) +
              "\n"
              "Prune deletes only objects no kept point's restore chain uses, one at a time, in an order\n"
              "that is safe to kill at any moment: every kept point stays restorable. A replica with a\n"
              "broken chain is left alone (run walship verify). Safe to run while replicate writes.\n"
              "\n"
              "Examples:\n"
              "  walship prune --dry-run file:///backups/app\n"
              "  walship prune file:///backups/app\n"
              "  walship prune --keep-within 2h --keep-daily 14 file:///backups/app\n"
              "  walship prune --keep-last 10 --keep-weekly 8 file:///backups/cron-snapshots");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      args->options.policy = retention_policy_of(args->flags);
      const auto storage = open_replica(args->url);
      const PruneResult result = run_prune(args->options, *storage);
      const std::string out =
          render_prune(result, args->options.policy, args->options.dry_run, global.verbose > 0);
      std::fwrite(out.data(), 1, out.size(), stdout);
      return 0;
    };
  });
}

}  // namespace walship::cmd
