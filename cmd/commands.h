// Each cmd/<name>.cpp registers one subcommand: it parses flags into its
// options and sets `run` to call the one lib/ function that does the work.
// Errors are thrown as walship::Error and mapped to exit codes in main.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace walship::cmd {

struct GlobalOptions {
  int verbose = 0;
  bool quiet = false;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string log_timestamps;  // "true", "false"; empty: on, unless stderr is the journal
};

// Returns the process exit code.
using Runner = std::function<int()>;

void add_snapshot_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_restore_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_replicate_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_ls_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_serve_replica_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_prune_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_verify_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_status_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_sync_command(CLI::App& app, const GlobalOptions& global, Runner& run);
void add_doctor_command(CLI::App& app, Runner& run);
void add_version_command(CLI::App& app, Runner& run);

std::string version_text();

}  // namespace walship::cmd
