#include "lib/replica/restore.h"

#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/config/option_defs.h"
#include "lib/config/time_arg.h"
#include "lib/format/keys.h"
#include "lib/replica/fast_forward.h"
#include "lib/util/error.h"
#include "lib/util/log.h"
#include "lib/util/progress.h"
#include "lib/util/signals.h"
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

// After the result line of an --allow-older restore short of the newest.
std::string older_note(const RestoreResult& result) {
  if (result.txid >= result.newest_txid) return "";
  return "; not the replica's newest: that is TXID " + format::txid_hex(result.newest_txid) +
         ", which is not reachable";
}

// After the result line of a --delta restore (or dry run): what was reused,
// or why not.
std::string delta_note(const RestoreResult& result) {
  if (result.reused && result.dry_run)
    return "; reusing the local pages of TXID " + format::txid_hex(result.reused_txid);
  if (result.reused) {
    return "; reused the local pages of TXID " + format::txid_hex(result.reused_txid) + ", fetched " +
           human_bytes(result.downloaded_bytes);
  }
  if (!result.full_because.empty()) return "; in full: " + result.full_because;
  return "";
}

void print_restored(const std::string& path, const RestoreResult& result) {
  std::printf("restored %s to TXID %s (%s): %u pages from %zu objects%s%s\n", path.c_str(),
              format::txid_hex(result.txid).c_str(), format_rfc3339(result.commit_time_ms).c_str(),
              result.db_pages, result.objects, delta_note(result).c_str(), older_note(result).c_str());
}

// restore --fast-forward: one stdout line saying what it did to PATH.
int fast_forward(const RestoreOptions& options, Storage& storage) {
  const std::string& path = options.output_path;
  const FastForwardResult r = run_fast_forward(options, storage);
  using Action = FastForwardResult::Action;
  if (r.action == Action::restored && r.restore.skipped) {
    log(LogLevel::info, "nothing to restore", {{"reason", r.restore.skip_reason}});
  } else if (r.action == Action::restored) {
    print_restored(path, r.restore);
  } else if (r.action == Action::newest_already) {
    std::printf("%s is the replica's newest point (TXID %s): left as it is\n", path.c_str(),
                format::txid_hex(r.from_txid).c_str());
  } else if (r.action == Action::ahead_of_replica) {
    std::printf(
        "%s is ahead of the replica, which nobody else wrote since: left as it is for replicate to ship\n",
        path.c_str());
  } else {
    std::printf("fast-forwarded %s from TXID %s to TXID %s (%s); the old file is %s%s\n", path.c_str(),
                format::txid_hex(r.from_txid).c_str(), format::txid_hex(r.restore.txid).c_str(),
                format_rfc3339(r.restore.commit_time_ms).c_str(), r.kept_as.c_str(),
                delta_note(r.restore).c_str());
  }
  return 0;
}

}  // namespace

void add_restore_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    RestoreOptions options;
    std::string url;
    std::string txid;
    std::string timestamp;
    ConfigFlags config;
    bool fast_forward = false;
    bool delta = false;
    std::string verify = "checksum";
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("restore", "Rebuild a database from its replica");
  sub->add_option("URL", args->url,
                  "The replica: file:///path, s3://bucket/prefix, gs://bucket/prefix, sftp://user@host/path "
                  "or /abs/path; with --config, the database's path (and the default --output)");
  sub->add_option("-o,--output", args->options.output_path,
                  "Where to write the database (required unless --config names the database)");
  add_config_flags(*sub, args->config);
  auto* txid = sub->add_option("--txid", args->txid, "Restore to this TXID (as walship ls prints it)");
  auto* timestamp =
      sub->add_option(
             "--timestamp", args->timestamp,
             "Restore to the last point at or before this time: RFC 3339, or a duration ago (-15m, 2h)")
          ->excludes(txid);
  sub->add_flag("--allow-older", args->options.target.allow_older,
                "When no path reaches the replica's newest TXID (a missing or broken object), restore the "
                "newest reachable point instead of failing; stdout says it is not the newest")
      ->excludes(txid)
      ->excludes(timestamp);
  sub->add_flag("-n,--dry-run", args->options.dry_run,
                "Print the point and what restoring it would fetch (objects, bytes); write nothing");
  sub->add_flag("--if-replica-exists", args->options.if_replica_exists,
                "Succeed without doing anything if there is no replica");
  auto* if_db_not_exists = sub->add_flag("--if-db-not-exists", args->options.if_db_not_exists,
                                         "Succeed without doing anything if PATH exists");
  auto* force = sub->add_flag("-f,--force", args->options.force,
                              "Replace PATH if it exists (and remove a stale PATH-wal/-shm)");
  sub->add_flag("--fast-forward", args->fast_forward,
                "PATH an older point of the replica: move it to PATH.walship-old and restore the newest; "
                "PATH the newest, or ahead of a replica nobody else wrote: leave it; PATH with writes the "
                "replica never got while another writer went on: exit 4")
      ->excludes(if_db_not_exists)
      ->excludes(force)
      ->excludes(txid)
      ->excludes(timestamp);
  sub->add_flag("--delta", args->delta,
                "With --force or --fast-forward: start from PATH's pages and, when they are a point of the "
                "replica, fetch only the deltas from there (a node back with a stale copy); otherwise "
                "restore in full")
      ->excludes(if_db_not_exists);
  sub->add_flag("--verify{full}", args->verify,
                "Beyond the whole-database checksum, which always proves the pages are the source's: "
                "quick (PRAGMA quick_check) or full (integrity_check, what --verify alone runs); "
                "checksum: nothing more")
      ->option_text("[=checksum|quick|full]");  // parse_integrity_check owns the names
  sub->add_option("--parallelism", args->options.parallelism, "Downloads in flight")
      ->check(CLI::Range(int64_t{1}, k_max_parallelism))
      ->capture_default_str();
  sub->footer(
      "The database is built in a temp file beside PATH, checked (the whole-database checksum, and\n"
      "SQLite's own check with --verify), fsynced and renamed into place: PATH never holds a\n"
      "partial database.\n"
      "A bad object is skipped when another path reaches the same point. The latest restore never\n"
      "silently goes back in time: when no path reaches the replica's newest TXID it exits 1\n"
      "naming the gap, unless --allow-older.\n"
      "\n"
      "A node that comes back with its old disk runs restore --fast-forward before its app: the\n"
      "newest point replaces PATH only when PATH is an older point of the replica, so no write\n"
      "the replica never got is thrown away.\n"
      "\n" +
      std::string(k_config_help) +
      "\n"
      "Examples:\n"
      "  walship restore file:///backups/app -o /data/app.db\n"
      "  walship restore --if-replica-exists --if-db-not-exists file:///backups/app -o /data/app.db\n"
      "  walship restore --if-replica-exists --fast-forward file:///backups/app -o /data/app.db\n"
      "  walship restore file:///backups/app -o /tmp/old.db --timestamp 2026-11-20T08:00:00Z\n"
      "  walship restore file:///backups/app -o /tmp/old.db --timestamp -15m\n"
      "  walship restore file:///backups/app -o /tmp/old.db --txid 00000000000000a3\n"
      "  walship restore --dry-run --timestamp -1h file:///backups/app\n"
      "  walship restore --allow-older file:///backups/app -o /tmp/app.db\n"
      "  walship restore --force --delta file:///backups/app -o /data/app.db\n"
      "  walship restore --config /etc/walship/walship.toml /data/app.db --if-db-not-exists");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      RestoreOptions& options = args->options;
      options.quiet = global.quiet;
      options.integrity = parse_integrity_check(args->verify);
      if (!args->txid.empty()) options.target.txid = parse_txid_arg(args->txid);
      if (!args->timestamp.empty()) {
        options.target.time_ms = parse_time_arg(args->timestamp, now_ms());
        if (!options.target.time_ms) {
          throw UsageError(
              "invalid --timestamp '" + args->timestamp +
              "': use RFC 3339 with a zone, e.g. 2026-11-20T08:00:00Z, or a duration ago, e.g. -15m");
        }
      }
      die_on_stop_signals();
      const ChosenReplica replica = choose_replica(args->config, args->url, "restore");
      if (options.output_path.empty() && replica.configured)
        options.output_path = replica.configured->db_path;
      if (options.output_path.empty() && !options.dry_run) {
        throw UsageError("--output is required: where to write the database (or --config naming it)");
      }
      if (args->delta) {
        if (!options.force && !args->fast_forward) {
          throw UsageError(
              "--delta starts from PATH's pages: pass --force too (PATH is replaced) or --fast-forward "
              "(an older PATH is kept as PATH.walship-old)");
        }
        options.reuse_path = options.output_path;
      }
      const auto& storage = replica.storage;
      if (args->fast_forward && !options.dry_run) return fast_forward(options, *storage);
      const RestoreResult result = run_restore(options, *storage);
      if (result.dry_run) {
        std::printf("would restore %s to TXID %s (%s): %zu %s, %s to fetch%s%s\n",
                    options.output_path.empty() ? "(no --output)" : options.output_path.c_str(),
                    format::txid_hex(result.txid).c_str(), format_rfc3339(result.commit_time_ms).c_str(),
                    result.objects, result.objects == 1 ? "object" : "objects",
                    human_bytes(result.downloaded_bytes).c_str(), delta_note(result).c_str(),
                    older_note(result).c_str());
        return 0;
      }
      if (result.skipped) {
        log(LogLevel::info, "nothing to restore", {{"reason", result.skip_reason}});
        return 0;
      }
      print_restored(options.output_path, result);
      return 0;
    };
  });
}

}  // namespace walship::cmd
