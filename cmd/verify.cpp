#include "lib/replica/verify.h"

#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/config/option_defs.h"
#include "lib/util/error.h"

namespace walship::cmd {

namespace {

// "all", or a TXID as walship ls prints it.
std::optional<uint64_t> parse_point_arg(const std::string& text) {
  if (text == "all") return std::nullopt;
  std::string digits = text;
  if (digits.starts_with("0x") || digits.starts_with("0X")) digits = digits.substr(2);
  const bool ok = !digits.empty() && digits.size() <= 16 &&
                  digits.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
  if (!ok || std::stoull(digits, nullptr, 16) == 0) {
    throw UsageError("invalid --point '" + text +
                     "': give 'all' or a TXID as walship ls prints it (hex, e.g. 00000000000000a3)");
  }
  return std::stoull(digits, nullptr, 16);
}

}  // namespace

void add_verify_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::string url;
    std::string point = "all";
    bool json = false;
    VerifyOptions options;
    ConfigFlags config;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("verify", "Prove that every restore point of a replica restores");
  sub->add_option("URL", args->url,
                  "The replica: file:///path, s3://bucket/prefix, gs://bucket/prefix, sftp://user@host/path "
                  "or /abs/path; with --config, the database's path");
  add_config_flags(*sub, args->config);
  sub->add_option("--db", args->options.db_path,
                  "Also check that this live database equals the replica's newest point");
  sub->add_option("--point", args->point, "Check only this restore point (TXID), or all")
      ->capture_default_str();
  sub->add_flag("--full", args->options.full,
                "Restore each point into a temp directory and run PRAGMA integrity_check");
  sub->add_option("--temp-dir", args->options.temp_dir, "Where --full restores (default: $TMPDIR or /tmp)");
  sub->add_option("--parallelism", args->options.parallelism, "Objects read at once")
      ->check(CLI::Range(int64_t{1}, k_max_parallelism))
      ->capture_default_str();
  sub->add_flag("--json", args->json, "Print JSON for scripts");
  sub->footer(
      "Reads every object whole (frames, checksums, header against key, a snapshot's pages against\n"
      "its database checksum), then checks each restore point's chain as restore would take it:\n"
      "every delta starts right after the previous object and its pre-checksum equals that\n"
      "object's post-checksum. Each problem names the broken or missing object and the restore\n"
      "points it breaks.\n"
      "\n"
      "Exit codes: 0 healthy, 3 a problem was found, 1 the replica could not be checked.\n"
      "\n" +
      std::string(k_config_help) +
      "\n"
      "Examples:\n"
      "  walship verify file:///backups/app\n"
      "  walship verify --full file:///backups/app\n"
      "  walship verify --db /data/app.db file:///backups/app\n"
      "  walship verify --config /etc/walship/walship.toml /data/app.db\n"
      "  walship verify --json file:///backups/app | jq '.problems'");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      args->options.point = parse_point_arg(args->point);
      args->options.quiet = global.quiet || args->json;
      const ChosenReplica replica = choose_replica(args->config, args->url, "verify");
      const auto& storage = replica.storage;
      const VerifyReport report = run_verify(args->options, *storage);
      const std::string out = args->json ? render_verify_json(report) : render_verify_table(report);
      std::fwrite(out.data(), 1, out.size(), stdout);
      return static_cast<int>(report.healthy() ? ExitCode::ok : ExitCode::verify_problem);
    };
  });
}

}  // namespace walship::cmd
