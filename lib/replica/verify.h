// `walship verify URL`: proves what a replica can restore (DESIGN.md,
// "Retention": "verify proves every kept point restores").
//
// - Every object is read whole: it parses, its frames and file checksum
//   hold, its header agrees with its key (kind, TXIDs), and a snapshot's
//   pages hash to the whole-database checksum it carries.
// - Every restore point (every TXID an object ends at) is planned as restore
//   would plan it, and the chain is checked link by link: each delta starts
//   at the TXID after the previous object's and its pre-checksum equals that
//   object's post-checksum.
// - --full restores each point into a temp directory and runs
//   PRAGMA integrity_check on it.
// - --db compares the live database with the newest point.
// Each problem names the broken (or missing) object and the restore points
// it breaks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/config/option_defs.h"
#include "lib/storage/storage.h"

namespace walship {

struct VerifyOptions {
  std::optional<uint64_t> point;            // only this restore point; nullopt: all of them
  bool full = false;                        // restore each point and run integrity_check
  std::string db_path;                      // compare this live database with the newest point
  std::string temp_dir;                     // for --full; empty: $TMPDIR or /tmp
  int parallelism = k_default_parallelism;  // objects read at once
  bool quiet = false;                       // no progress bar
};

struct VerifyPoint {
  uint64_t txid = 0;
  uint64_t time_ms = 0;
  size_t objects = 0;  // in its restore chain
  bool ok = true;
  bool restored = false;  // --full: restored and integrity_check passed
  std::string error;      // why it is broken
};

struct VerifyProblem {
  std::string key;  // the broken object; "<key> (missing)" for a gap; "database" for --db
  std::string error;
  std::vector<uint64_t> breaks;  // restore points it breaks, ascending
};

// An object a fenced writer landed after a takeover (DESIGN.md, "Fencing"):
// no restore uses it and prune deletes it, so it is no problem.
struct VerifySuperseded {
  std::string key;
  uint64_t size = 0;
  uint64_t fence = 0;  // the TXID of the fence it lies behind
};

struct VerifyReport {
  std::string replica;
  size_t snapshots = 0;
  size_t deltas = 0;
  uint64_t bytes = 0;
  size_t broken_objects = 0;
  std::vector<VerifySuperseded> superseded;
  bool full = false;
  std::vector<VerifyPoint> points;  // newest first
  std::vector<VerifyProblem> problems;
  std::string db_path;  // --db
  bool db_match = false;
  uint64_t db_txid = 0;  // the point the database was compared with

  bool healthy() const { return problems.empty(); }
  size_t broken_points() const;
};

// Throws Failure when the replica cannot be checked at all (an empty or
// unreachable replica, a storage error, an unknown --point); every problem
// the replica has is in the report instead.
VerifyReport run_verify(const VerifyOptions& options, Storage& storage);

// A summary a person reads in two seconds, then one paragraph per problem.
std::string render_verify_table(const VerifyReport& report);
std::string render_verify_json(const VerifyReport& report);

}  // namespace walship
