// `walship replicate`: one process replicating many databases (DESIGN.md,
// "Replicate"). The main thread waits on inotify, timers and signals and
// decides what is due; a fixed pool of workers runs the Replicator steps, so
// memory and concurrent uploads stay bounded however many databases there are.
// The databases of a walship.toml with role = "serve-replica" are followed in
// the same process, a thread each (`serve-replica --config` runs only those).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lib/cloud/preemption_notice.h"
#include "lib/config/config.h"
#include "lib/config/option_defs.h"
#include "lib/replica/status_board.h"
#include "lib/storage/storage.h"

namespace walship {

struct ReplicateRun {
  ReplicateConfig config;
  std::vector<std::string> exec_argv;  // --exec: the app to run as a child; empty: none
  int workers = k_default_workers;     // steps (and uploads) running at once
  // A configured database that does not exist yet is waited for (its
  // directory watched) instead of being an error.
  bool wait_for_databases = false;
  // --take-over: every database's replica lease is taken even from a live
  // writer (lease.h).
  bool take_over = false;
  // How long the --exec app has to exit after a forwarded stop (or a
  // fence's SIGTERM) before SIGKILL.
  int64_t shutdown_timeout_ms = k_default_shutdown_timeout_ms;
  // Where every database's status goes (for --http); null: nowhere to read it.
  StatusBoard* board = nullptr;
  // --preemption-notice: starts the watcher at start (it may give null:
  // nothing to watch); unset: no watcher. On a notice every database ships
  // at once, then at most every notice_sync_interval_ms until the stop, the
  // next step checkpoints, and on_notice_argv runs once (DESIGN.md,
  // "Preemption notices").
  NoticeWatcherFactory notice_watcher;
  int64_t notice_sync_interval_ms = k_default_notice_sync_interval_ms;
  std::vector<std::string> on_notice_argv;  // --on-notice; empty: none
};

using OpenStorageFn = std::function<std::unique_ptr<Storage>(
    const std::string& url, const std::map<std::string, std::string>& settings)>;

// Runs until SIGTERM/SIGINT (or the --exec child's exit), then ships what is
// committed and returns the exit code: 0, the child's, or 1 if the final
// ship failed. Throws FencedError (exit 4) when another writer holds a
// configured database's replica, takes it over, or this node's data is
// behind it (the app is stopped first). Throws UsageError for a configuration problem found at start
// (a database that is missing (unless waited for), not SQLite, not in WAL
// mode; a bad URL; a follower database another process writes). Followers start once the
// replicated databases did (so one may follow a replica the same process
// writes) and stop between transactions; one whose replica is empty or
// unreachable keeps trying, with its error on /healthz.
int run_replicate(const ReplicateRun& run, const OpenStorageFn& open_storage);

// Splits an --exec command line into words: blanks separate, '...' and "..."
// quote, backslash escapes. Throws UsageError for an unterminated quote or an
// empty command.
std::vector<std::string> split_command(const std::string& command);

// The replica URL of database `file_name` in a directory replicated to
// `prefix_url`: the name appended to the path (before any ?query).
std::string join_replica_url(const std::string& prefix_url, const std::string& file_name);

}  // namespace walship
