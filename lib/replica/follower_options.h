// What can be tuned per followed database (serve-replica's flags, a
// walship.toml database with role = "serve-replica"). Defaults and limits:
// lib/config/option_defs.h.
#pragma once

#include <cstdint>
#include <string>

#include "lib/config/option_defs.h"

namespace walship {

struct FollowOptions {
  std::string db_path;
  int64_t poll_interval_ms = k_default_poll_interval_ms;  // GET of the next L0 delta
  int64_t list_interval_ms = k_default_list_interval_ms;  // LIST: catch up through compacted levels, re-seeds
  uint32_t checkpoint_pages = k_default_checkpoint_pages;  // PASSIVE checkpoint of PATH's WAL past this many
  int parallelism = k_default_parallelism;                 // downloads in flight while catching up
  bool quiet = false;
  // -1: SIGTERM/SIGINT stop the follower (serve-replica URL PATH). Else it runs
  // inside another command, which owns the signals: it stops between
  // transactions once this descriptor is readable.
  int stop_fd = -1;
};

}  // namespace walship
