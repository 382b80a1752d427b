// Entry point: builds the CLI, runs the chosen subcommand, and maps every
// error to one line on stderr and DESIGN.md's exit codes.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

#include "cmd/commands.h"
#include "lib/util/error.h"
#include "lib/util/log.h"

namespace {

using walship::ExitCode;

void configure_logging(const walship::cmd::GlobalOptions& global) {
  walship::LogLevel level = walship::LogLevel::info;
  if (global.log_level == "debug") level = walship::LogLevel::debug;
  if (global.log_level == "warn") level = walship::LogLevel::warn;
  if (global.log_level == "error") level = walship::LogLevel::error;
  if (global.verbose > 0) level = walship::LogLevel::debug;
  if (global.quiet && level < walship::LogLevel::warn) level = walship::LogLevel::warn;
  walship::set_log_level(level);
  walship::set_log_format(global.log_format == "json" ? walship::LogFormat::json : walship::LogFormat::text);
  // journald stamps every line itself: no second time unless asked for.
  walship::set_log_timestamps(global.log_timestamps.empty() ? !walship::stderr_is_journal()
                                                            : global.log_timestamps == "true");
}

int fail(ExitCode code, const std::string& message) {
  walship::write_error_line(message, static_cast<int>(code));
  return static_cast<int>(code);
}

// Before parsing succeeds the options are not known yet, but a usage error
// should still come out as JSON when --log-format json was asked for.
void configure_error_format(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--log-format=json" ||
        (arg == "--log-format" && i + 1 < argc && std::strcmp(argv[i + 1], "json") == 0))
      walship::set_log_format(walship::LogFormat::json);
  }
}

// The first word that is not an option (nor an option's value): what the
// user meant as the command.
std::string first_word(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--log-format" || arg == "--log-level" || arg == "--log-timestamps") {
      ++i;
      continue;
    }
    if (!arg.starts_with('-')) return std::string(arg);
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "walship: ship every committed SQLite transaction to storage that outlives the machine,\n"
      "and restore the database anywhere, to the latest or any kept point in time."};
  app.name("walship");
  app.require_subcommand(1);
  // Global options are also accepted after the command (`walship snapshot
  // -q DB URL`): a subcommand hands what it does not know to the app.
  app.fallthrough();
  app.set_version_flag("--version", walship::cmd::version_text());
  app.footer(
      "Examples:\n"
      "  walship replicate /data/app.db file:///backups/app\n"
      "  walship snapshot /data/app.db file:///backups/app\n"
      "  walship ls file:///backups/app\n"
      "  walship restore file:///backups/app -o /data/app.db --if-db-not-exists\n"
      "  walship verify file:///backups/app\n"
      "  walship prune --dry-run file:///backups/app\n"
      "  walship serve-replica file:///backups/app /data/replica.db\n"
      "  walship doctor gs://bucket/app\n"
      "\n"
      "  walship status --config /etc/walship/walship.toml\n"
      "\n"
      "The options above work before or after the command. Logs go to stderr, one line per event\n"
      "starting with its time (RFC 3339, UTC); timestamps are off when stderr is the systemd journal.\n"
      "\n"
      "Environment: WALSHIP_CONFIG (the walship.toml of --config when none is given; default\n"
      "/etc/walship/walship.toml when it exists), JOURNAL_STREAM (set by systemd).\n"
      "\n"
      "Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 verification found a problem.\n"
      "Run 'walship COMMAND --help' for a command's options.\n");

  walship::cmd::GlobalOptions global;
  app.add_flag("-v,--verbose", global.verbose, "Log every step (debug level)");
  app.add_flag("-q,--quiet", global.quiet, "No progress bars, only warnings and errors");
  app.add_option("--log-level", global.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--log-format", global.log_format, "text (key=value) or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-timestamps", global.log_timestamps,
                 "Start each log line with its time: true or false (default: true, false when stderr is the "
                 "systemd journal)")
      ->check(CLI::IsMember({"true", "false"}));

  walship::cmd::Runner run;
  walship::cmd::add_snapshot_command(app, global, run);
  walship::cmd::add_replicate_command(app, global, run);
  walship::cmd::add_restore_command(app, global, run);
  walship::cmd::add_ls_command(app, global, run);
  walship::cmd::add_verify_command(app, global, run);
  walship::cmd::add_prune_command(app, global, run);
  walship::cmd::add_serve_replica_command(app, global, run);
  walship::cmd::add_status_command(app, global, run);
  walship::cmd::add_sync_command(app, global, run);
  walship::cmd::add_doctor_command(app, run);
  walship::cmd::add_version_command(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    configure_error_format(argc, argv);
    const std::string word = first_word(argc, argv);
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) known = known || sub->get_name() == word;
    if (app.get_subcommands().empty() && !word.empty() && !known) {
      return fail(ExitCode::usage, "unknown command '" + word + "': run 'walship --help' for the commands");
    }
    std::string where = "walship";
    for (const CLI::App* sub : app.get_subcommands()) where += " " + sub->get_name();
    return fail(ExitCode::usage, e.what() + std::string(": run '") + where + " --help' for usage");
  }

  configure_logging(global);
  try {
    return run();
  } catch (const walship::Error& e) {
    return fail(e.code(), e.what());
  } catch (const std::exception& e) {
    return fail(ExitCode::failure, std::string("unexpected error: ") + e.what());
  }
}
