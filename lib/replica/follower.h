// `walship serve-replica`: a live local copy of a replica that readers open
// read-only (DESIGN.md, "Serve-replica"). The Follower restores PATH if it is
// missing, then applies every delta of the replica to it in ONE SQLite write
// transaction through sqlite_dbpage (pages and size together), checking the
// chain rule and the delta's whole-database checksum before COMMIT, so a
// reader never sees a torn transaction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "lib/replica/follow_metrics.h"
#include "lib/replica/follower_options.h"
#include "lib/storage/storage.h"

namespace walship {

// True while a serve-replica process follows into the database whose state
// directory ("<db>-walship") this is: it holds "<dir>/serve.lock". replicate
// refuses such a database (serve-replica is its only writer).
bool followed_by_serve_replica(const std::string& state_dir);

// Runs until SIGTERM/SIGINT, then returns 0. Throws UsageError when PATH
// cannot be followed (another walship process writes or replicates it, not a
// WAL database, no replica at the URL) and Failure when following fails for
// good (a corrupt replica). Transient storage errors are retried at the next
// poll and reported through the monitor.
int run_serve_replica(const FollowOptions& options, Storage& storage, FollowMonitor& monitor);

}  // namespace walship
