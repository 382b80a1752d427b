#include "lib/replica/snapshot.h"

#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/format/keys.h"
#include "lib/replica/control_socket.h"
#include "lib/util/progress.h"
#include "lib/util/signals.h"

namespace walship::cmd {

void add_snapshot_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    SnapshotOptions options;
    std::string url;
    ConfigFlags config;
    std::string control_socket;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("snapshot", "Write a full snapshot of a live database to its replica");
  sub->add_option("DB", args->options.db_path, "The SQLite database (WAL or rollback journal mode)")
      ->required();
  sub->add_option("URL", args->url,
                  "The replica: file:///path, s3://bucket/prefix, gs://bucket/prefix, sftp://user@host/path "
                  "or /abs/path (none with --config)");
  add_config_flags(*sub, args->config);
  sub->add_option("--control-socket", args->control_socket,
                  "Where the replicate of DB listens (default: walship.toml's control-socket for DB, else "
                  "DB-walship/control.sock)")
      ->type_name("PATH");
  sub->add_option("--zstd-level", args->options.zstd_level, "zstd compression level")
      ->check(CLI::Range(1, 19))
      ->capture_default_str();
  sub->footer(
      "The snapshot is consistent: it is read in one transaction while the app keeps writing,\n"
      "and becomes the next TXID of the replica. Like replicate, it writes under the replica's\n"
      "lease. While a replicate on this machine ships DB to URL, snapshot asks it to write the\n"
      "snapshot into its chain (over its control socket) and prints its TXID; while another\n"
      "writer holds the replica, it exits 4 without writing.\n"
      "\n" +
      std::string(k_config_help) +
      "\n"
      "Examples:\n"
      "  walship snapshot /data/app.db file:///backups/app\n"
      "  walship snapshot --config /etc/walship/walship.toml /data/app.db\n"
      "  */15 * * * *  walship snapshot -q /data/app.db file:///backups/app   (crontab)");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      args->options.quiet = global.quiet;
      die_on_stop_signals();
      const ChosenReplica replica =
          choose_replica(args->config, args->url, args->options.db_path, "snapshot");
      const auto& storage = replica.storage;
      std::string socket = args->control_socket;
      if (socket.empty() && replica.configured) socket = replica.configured->settings.control_socket;
      if (socket.empty()) socket = default_control_socket_path(args->options.db_path);
      if (const auto answer = ask_control_socket(socket, "snapshot " + storage->url(), -1)) {
        // A replicate ships this database to the replica: it writes the
        // snapshot into its own chain.
        if (!answer->starts_with("ok ")) {
          throw Failure("the replicate that ships '" + args->options.db_path +
                        "' could not write the snapshot: " + answer->substr(answer->find(' ') + 1));
        }
        const std::string txid = answer->substr(3);
        std::printf("snapshot %s of %s written by the replicate that ships it, as %s\n", txid.c_str(),
                    args->options.db_path.c_str(),
                    (storage->url() + "/" + format::snapshot_key(std::stoull(txid, nullptr, 16))).c_str());
        return 0;
      }
      const SnapshotResult result = run_snapshot(args->options, *storage);
      std::printf("snapshot %s of %s: %u pages, %s written as %s\n", format::txid_hex(result.txid).c_str(),
                  args->options.db_path.c_str(), result.db_pages, human_bytes(result.object_bytes).c_str(),
                  (storage->url() + "/" + result.key).c_str());
      return 0;
    };
  });
}

}  // namespace walship::cmd
