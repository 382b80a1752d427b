#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/config/time_arg.h"
#include "lib/replica/list_points.h"
#include "lib/util/error.h"
#include "lib/util/time.h"

namespace walship::cmd {

namespace {

std::optional<uint64_t> time_arg(const std::string& flag, const std::string& text, uint64_t now) {
  if (text.empty()) return std::nullopt;
  const std::optional<uint64_t> ms = parse_time_arg(text, now);
  if (!ms) {
    throw UsageError("invalid " + flag + " '" + text +
                     "': give a duration ago such as 15m, 2h or 7d, or an RFC 3339 time such as "
                     "2026-11-20T08:00:00Z");
  }
  return ms;
}

}  // namespace

void add_ls_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::string url;
    bool json = false;
    size_t last = 0;
    std::string since;
    std::string until;
    ConfigFlags config;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("ls", "List the restore points of a replica, newest first");
  sub->add_option("URL", args->url,
                  "The replica: file:///path, s3://bucket/prefix, gs://bucket/prefix, sftp://user@host/path "
                  "or /abs/path; with --config, the database's path");
  add_config_flags(*sub, args->config);
  sub->add_option("--last", args->last, "Only the N newest points")->check(CLI::Range(1, 0x7fffffff));
  sub->add_option("--since", args->since, "Only points at or after this time: 15m (ago), 7d, or RFC 3339");
  sub->add_option("--until", args->until, "Only points at or before this time: 15m (ago), 7d, or RFC 3339");
  sub->add_flag("--json", args->json, "Print JSON for scripts");
  sub->footer(
      "Each row is a restore point: its TXID, its commit time, and what a restore of it downloads\n"
      "(the snapshot and the deltas chained onto it). With -v, the object that ends at the point\n"
      "(a snapshot or a delta level L0-L3) and its size. The last line sums up the points shown\n"
      "and what the replica holds. Exit 1 with \"no replica at URL\" when nothing is there.\n"
      "\n" +
      std::string(k_config_help) +
      "\n"
      "Examples:\n"
      "  walship ls file:///backups/app\n"
      "  walship ls --last 10 gs://bucket/app\n"
      "  walship ls --since 2h --until 1h file:///backups/app\n"
      "  walship ls --config /etc/walship/walship.toml /data/app.db\n"
      "  walship ls file:///backups/app --json | jq -r '.[0].txid'");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      PointFilter filter;
      const uint64_t now = now_ms();
      filter.since_ms = time_arg("--since", args->since, now);
      filter.until_ms = time_arg("--until", args->until, now);
      if (args->last > 0) filter.last = args->last;
      const ChosenReplica replica = choose_replica(args->config, args->url, "ls");
      const PointReport report = report_points(*replica.storage, filter, 8);
      const std::string out =
          args->json ? render_points_json(report.points) : render_points_table(report, global.verbose > 0);
      std::fwrite(out.data(), 1, out.size(), stdout);
      return 0;
    };
  });
}

}  // namespace walship::cmd
