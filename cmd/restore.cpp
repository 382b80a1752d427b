#include "lib/replica/restore.h"

#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/format/keys.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/time.h"

namespace walship::cmd {

namespace {

// TXIDs are written as walship ls prints them: up to 16 hex digits.
uint64_t parse_txid_arg(const std::string& text) {
  std::string digits = text;
  if (digits.starts_with("0x") || digits.starts_with("0X")) digits = digits.substr(2);
  const bool ok = !digits.empty() && digits.size() <= 16 &&
                  digits.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
  if (!ok) {
    throw UsageError("invalid --txid '" + text +
                     "': give a TXID as walship ls prints it (hex, e.g. 00000000000000a3)");
  }
  const uint64_t txid = std::stoull(digits, nullptr, 16);
  if (txid == 0) throw UsageError("invalid --txid '" + text + "': TXIDs start at 1");
  return txid;
}

}  // namespace

void add_restore_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    RestoreOptions options;
    std::string url;
    std::string txid;
    std::string timestamp;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("restore", "Rebuild a database from its replica");
  sub->add_option("URL", args->url, "The replica: file:///path, or an absolute path")->required();
  sub->add_option("-o,--output", args->options.output_path, "Where to write the database")->required();
  auto* txid = sub->add_option("--txid", args->txid, "Restore to this TXID (as walship ls prints it)");
  sub->add_option("--timestamp", args->timestamp, "Restore to the last point at or before this RFC 3339 time")
      ->excludes(txid);
  sub->add_flag("--if-replica-exists", args->options.if_replica_exists,
                "Succeed without doing anything if there is no replica");
  sub->add_flag("--if-db-not-exists", args->options.if_db_not_exists,
                "Succeed without doing anything if PATH exists");
  sub->add_flag("-f,--force", args->options.force,
                "Replace PATH if it exists (and remove a stale PATH-wal/-shm)");
  sub->add_flag("--verify", args->options.full_integrity_check,
                "Run PRAGMA integrity_check instead of quick_check");
  sub->add_option("--parallelism", args->options.parallelism, "Downloads in flight")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->footer(
      "The database is built in a temp file beside PATH, checked (whole-database checksum and\n"
      "PRAGMA quick_check), fsynced and renamed into place: PATH never holds a partial database.\n"
      "\n"
      "Examples:\n"
      "  walship restore file:///backups/app -o /data/app.db\n"
      "  walship restore --if-replica-exists --if-db-not-exists file:///backups/app -o /data/app.db\n"
      "  walship restore file:///backups/app -o /tmp/old.db --timestamp 2026-11-20T08:00:00Z\n"
      "  walship restore file:///backups/app -o /tmp/old.db --txid 00000000000000a3");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      RestoreOptions& options = args->options;
      options.quiet = global.quiet;
      if (!args->txid.empty()) options.target.txid = parse_txid_arg(args->txid);
      if (!args->timestamp.empty()) {
        options.target.time_ms = parse_rfc3339(args->timestamp);
        if (!options.target.time_ms) {
          throw UsageError("invalid --timestamp '" + args->timestamp +
                           "': use RFC 3339 with a zone, e.g. 2026-11-20T08:00:00Z");
        }
      }
      install_cleanup_signal_handlers();
      const auto storage = open_replica(args->url);
      const RestoreResult result = run_restore(options, *storage);
      if (result.skipped) {
        log(LogLevel::info, "nothing to restore", {{"reason", result.skip_reason}});
        return 0;
      }
      std::printf("restored %s to TXID %s (%s): %u pages from %zu objects\n", options.output_path.c_str(),
                  format::txid_hex(result.txid).c_str(), format_rfc3339(result.commit_time_ms).c_str(),
                  result.db_pages, result.objects);
      return 0;
    };
  });
}

}  // namespace walship::cmd
