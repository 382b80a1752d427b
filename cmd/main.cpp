// Entry point: builds the CLI, runs the chosen subcommand, and maps every
// error to one line on stderr and DESIGN.md's exit codes.
#include <cstdio>
#include <exception>

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
}

int fail(ExitCode code, const std::string& message) {
  std::fprintf(stderr, "walship: %s\n", message.c_str());
  return static_cast<int>(code);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "walship: ship every committed SQLite transaction to storage that outlives the machine,\n"
      "and restore the database anywhere, to the latest or any kept point in time."};
  app.name("walship");
  app.require_subcommand(1);
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

  walship::cmd::Runner run;
  walship::cmd::add_snapshot_command(app, global, run);
  walship::cmd::add_replicate_command(app, global, run);
  walship::cmd::add_restore_command(app, global, run);
  walship::cmd::add_ls_command(app, global, run);
  walship::cmd::add_verify_command(app, global, run);
  walship::cmd::add_prune_command(app, global, run);
  walship::cmd::add_serve_replica_command(app, global, run);
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
