// `walship restore --fast-forward -o PATH URL`: bring a node that comes back
// with its old disk up to the replica's newest point, without ever throwing
// away writes the replica never got (DESIGN.md, "Fencing").
//
// PATH is compared with the replica by whole-database checksum:
// - missing: an ordinary restore;
// - the newest point already: nothing to do;
// - an older point of the replica (its local state says which, else the
//   delta headers do): PATH moves aside to PATH.walship-old (with its WAL)
//   and the newest point is restored in its place;
// - no point, but this node's own last ship is still the newest (it holds
//   commits a crash kept from shipping): left alone for replicate to ship;
// - no point otherwise (writes the replica never got, and the replica moved
//   on): FencedError, exit 4, saying how to keep either side.
#pragma once

#include <cstdint>
#include <string>

#include "lib/replica/restore.h"
#include "lib/storage/storage.h"

namespace walship {

struct FastForwardResult {
  enum class Action { restored, newest_already, fast_forwarded, ahead_of_replica };
  Action action = Action::restored;
  RestoreResult restore;   // restored and fast_forwarded: what was restored
  uint64_t from_txid = 0;  // fast_forwarded: the point PATH held; newest_already: the newest
  std::string kept_as;     // fast_forwarded: where the old file went
};

// `options.output_path` is PATH; options.force and if_db_not_exists are not
// used. Throws FencedError when PATH holds writes the replica never got.
FastForwardResult run_fast_forward(const RestoreOptions& options, Storage& storage);

}  // namespace walship
