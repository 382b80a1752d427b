#include "lib/replica/fast_forward.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <optional>

#include "lib/format/keys.h"
#include "lib/replica/local_state.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/restore.h"
#include "lib/replica/snapshot.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"

namespace walship {

namespace {

void rename_if_exists(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
    throw Failure(errno_message("unable to rename '" + from + "' to '" + to + "'", errno));
  }
}

// Moves PATH (and its WAL) aside, restores the newest point in its place,
// and moves it back if the restore fails.
RestoreResult replace_with_newest(const RestoreOptions& options, Storage& storage, const std::string& kept) {
  const std::string& path = options.output_path;
  if (path_exists(kept) || path_exists(kept + "-wal")) {
    throw Failure("'" + kept +
                  "' is left from an earlier fast-forward: move it away (it is an older copy of '" + path +
                  "'), then run again");
  }
  rename_if_exists(path + "-wal", kept + "-wal");
  rename_if_exists(path, kept);
  ::unlink((path + "-shm").c_str());
  RestoreOptions restore = options;
  restore.force = false;
  restore.if_db_not_exists = false;
  if (!restore.reuse_path.empty()) restore.reuse_path = kept;  // --delta: start from the old file's pages
  try {
    return run_restore(restore, storage);
  } catch (...) {
    rename_if_exists(kept, path);
    rename_if_exists(kept + "-wal", path + "-wal");
    throw;
  }
}

}  // namespace

FastForwardResult run_fast_forward(const RestoreOptions& options, Storage& storage) {
  const std::string& path = options.output_path;
  FastForwardResult result;
  if (!path_exists(path)) {
    result.restore = run_restore(options, storage);
    return result;
  }
  const uint64_t sum = database_checksum(path);
  const ReplicaListing listing = list_replica(storage);
  result.action = FastForwardResult::Action::ahead_of_replica;
  if (listing.empty()) return result;  // nothing the replica holds is newer
  HeaderCache headers(storage);
  const uint64_t newest = newest_txid(listing, headers);
  const auto newest_object = object_ending_at(listing, headers, newest);
  if (!newest_object) throw Failure("replica '" + storage.url() + "' lists no object for its newest TXID");
  const uint64_t newest_sum = fetch_post_checksum(storage, newest_object->first, newest_object->second);
  if (newest_sum == sum) {
    result.action = FastForwardResult::Action::newest_already;
    result.from_txid = newest;
    return result;
  }
  const std::optional<uint64_t> point =
      point_of_database(path, sum, storage, listing, headers, options.parallelism);
  if (!point) {
    // This node shipped the newest point itself and committed more since
    // (a crash kept it from shipping them): replicate ships them.
    const std::optional<ShippedState> state = LocalStateStore(local_state_dir(path), storage.url()).load();
    if (state && state->txid == newest && state->checksum == newest_sum) return result;
    throw FencedError("'" + path + "' holds writes the replica '" + storage.url() +
                      "' never got, and the replica moved on (its newest TXID is " +
                      format::txid_hex(newest) + "). Keep the replica's data: move '" + path +
                      "' away and remove '" + local_state_dir(path) +
                      "', then run this again; or keep this node's: walship replicate --take-over");
  }
  result.action = FastForwardResult::Action::fast_forwarded;
  result.from_txid = *point;
  result.kept_as = path + ".walship-old";
  result.restore = replace_with_newest(options, storage, result.kept_as);
  // What this node shipped describes the old file: forgotten, so replicate
  // takes PATH for the replica's newest state (not for a node behind it).
  LocalStateStore(local_state_dir(path), storage.url()).remove();
  return result;
}

}  // namespace walship
