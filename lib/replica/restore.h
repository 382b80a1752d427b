// `walship restore URL -o PATH`: rebuild a database from its replica, at the
// latest or a chosen restore point, without ever leaving a partial file at PATH.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "lib/config/option_defs.h"
#include "lib/replica/restore_plan.h"
#include "lib/storage/storage.h"

namespace walship {

// What a restore checks beyond the whole-database checksum, which always
// proves the pages written are the source's at that TXID (docs/DESIGN.md,
// "Restore"): nothing more (the default), PRAGMA quick_check or
// integrity_check, which also catch a source that was corrupt in SQLite's
// own terms before it was replicated.
enum class IntegrityCheck { checksum, quick, full };

// "checksum", "quick", "full": the names restore --verify takes.
IntegrityCheck parse_integrity_check(const std::string& name);

struct RestoreOptions {
  std::string output_path;
  RestoreTarget target;
  bool if_replica_exists = false;  // no replica: succeed without doing anything
  bool if_db_not_exists = false;   // PATH exists: succeed without doing anything
  bool force = false;              // replace an existing PATH
  IntegrityCheck integrity = IntegrityCheck::checksum;
  int parallelism = k_default_parallelism;
  bool quiet = false;
  bool dry_run = false;  // plan only: fill txid, commit time, objects and bytes; write nothing
  // restore --delta: a local database (PATH itself with --force, or with
  // --fast-forward the old file moved aside) whose pages the restore starts
  // from. When they are a point of the replica at or before the target, only
  // the deltas from there are fetched; otherwise the restore is a full one.
  std::string reuse_path;
};

struct RestoreResult {
  bool dry_run = false;  // planned only: downloaded_bytes is what the restore would fetch
  bool skipped = false;
  std::string skip_reason;
  uint64_t txid = 0;
  uint64_t newest_txid = 0;  // the latest point: the replica's newest (> txid only with allow_older)
  uint64_t commit_time_ms = 0;
  uint64_t checksum = 0;  // whole-database checksum of the restored state
  uint32_t db_pages = 0;
  uint32_t page_size = 0;
  size_t objects = 0;
  uint64_t downloaded_bytes = 0;
  bool reused = false;       // built from reuse_path's pages plus `objects` deltas
  uint64_t reused_txid = 0;  // the point those pages were
  std::string full_because;  // reuse_path was given and not used: why
};

// Plans from one LIST, downloads the objects in parallel into unlinked temp
// files, applies them into a temp file beside PATH checking the chain and
// whole-database checksums, runs options.integrity's check, fsyncs and renames.
RestoreResult run_restore(const RestoreOptions& options, Storage& storage);

// The point of the replica a local database holds, from its whole-database
// checksum `sum`: the one its local state (`db_path`-walship: the node's own
// last ship) names when that describes it, else found among the replica's
// headers and trailers; nullopt when it is no point. A bad object found on
// the way throws BadObjectError, or with `on_bad` is passed over and told.
std::optional<uint64_t> point_of_database(const std::string& db_path, uint64_t sum, Storage& storage,
                                          const ReplicaListing& listing, HeaderCache& headers,
                                          int parallelism,
                                          const std::function<void(const BadObjectError&)>& on_bad = {});

}  // namespace walship
