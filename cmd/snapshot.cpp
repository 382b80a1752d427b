#include "lib/replica/snapshot.h"

#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/format/keys.h"
#include "lib/util/fs.h"
#include "lib/util/progress.h"

namespace walship::cmd {

void add_snapshot_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    SnapshotOptions options;
    std::string url;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("snapshot", "Write a full snapshot of a live database to its replica");
  sub->add_option("DB", args->options.db_path, "The SQLite database (WAL or rollback journal mode)")
      ->required();
  sub->add_option("URL", args->url, "The replica: file:///path, or an absolute path")->required();
  sub->add_option("--zstd-level", args->options.zstd_level, "zstd compression level")
      ->check(CLI::Range(1, 19))
      ->capture_default_str();
  sub->footer(
      "The snapshot is consistent: it is read in one transaction while the app keeps writing,\n"
      "and becomes the next TXID of the replica.\n"
      "\n"
      "Examples:\n"
      "  walship snapshot /data/app.db file:///backups/app\n"
      "  */15 * * * *  walship snapshot -q /data/app.db file:///backups/app   (crontab)");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      args->options.quiet = global.quiet;
      install_cleanup_signal_handlers();
      const auto storage = open_replica(args->url);
      const SnapshotResult result = run_snapshot(args->options, *storage);
      std::printf("snapshot %s of %s: %u pages, %s written as %s\n", format::txid_hex(result.txid).c_str(),
                  args->options.db_path.c_str(), result.db_pages, human_bytes(result.object_bytes).c_str(),
                  (storage->url() + "/" + result.key).c_str());
      return 0;
    };
  });
}

}  // namespace walship::cmd
