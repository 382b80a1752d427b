// What can be tuned per followed database (serve-replica's flags, a
// walship.toml database with role = "serve-replica").
#pragma once

#include <cstdint>
#include <string>

namespace walship {

struct FollowOptions {
  std::string db_path;
  int64_t poll_interval_ms = 1000;   // GET of the next L0 delta
  int64_t list_interval_ms = 60000;  // LIST: catch up through compacted levels, notice re-seeds
  uint32_t checkpoint_pages = 1000;  // PASSIVE checkpoint of PATH's WAL past this many frames
  int parallelism = 4;               // downloads in flight while catching up
  bool quiet = false;
  // -1: SIGTERM/SIGINT stop the follower (serve-replica URL PATH). Else it runs
  // inside another command, which owns the signals: it stops between
  // transactions once this descriptor is readable.
  int stop_fd = -1;
};

}  // namespace walship
