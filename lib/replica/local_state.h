// The replicator's local memory of what it shipped (DESIGN.md, "Restart
// without rescanning"), kept in "<db>-walship/" beside the database: the
// TXID, whole-database checksum and WAL position of the last shipped state,
// and every page's hash in that state (8 bytes a page), which is what lets a
// restart after the WAL moved on behind walship's back ship exactly the
// pages that changed instead of a new snapshot. It is a cache: a missing or
// inconsistent state costs a rehash of the database, never correctness.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/util/fs.h"
#include "lib/wal/wal_scan.h"

namespace walship {

struct ShippedState {
  uint32_t page_size = 0;
  uint64_t txid = 0;
  uint64_t checksum = 0;
  uint32_t db_pages = 0;
  wal::WalPosition wal;  // the WAL position this state corresponds to
  // page_hashes[pgno - 1]: format::page_hash of the page; 0 for the lock page.
  std::vector<uint64_t> page_hashes;
  // The lease writer id of the process that shipped it (lease.h): tells a
  // node whose replica moved on without it from one that shipped last.
  std::string writer;

  // XOR of the page hashes equals the checksum, and there is one per page.
  bool consistent() const;

  // How the database whose page hashes are `hashes` (one per page, 0 for
  // the lock page) differs from this state: the pages whose hash differs
  // (ascending, within `hashes`) and its whole-database checksum, computed
  // from this state's in O(pages).
  struct Difference {
    std::vector<uint32_t> changed;
    uint64_t checksum = 0;
  };
  Difference difference(const std::vector<uint64_t>& hashes) const;
};

// The state of one (database, replica) pair: files "<id>.state" and
// "<id>.pages" in `dir`, where <id> is derived from the replica URL.
// Where replicate keeps a database's shipped state: "DB-walship".
inline std::string local_state_dir(const std::string& db_path) { return db_path + "-walship"; }

class LocalStateStore {
 public:
  LocalStateStore(std::string dir, const std::string& replica_url);

  const std::string& dir() const { return m_dir; }

  // The saved state, or nullopt when there is none or it is unreadable or
  // inconsistent (logged at debug level: it only costs a rehash).
  std::optional<ShippedState> load() const;

  // Saves `state`. `changed` lists the pages whose hash changed since the
  // last save (the pages file is updated in place); `full` rewrites it.
  // The state file is replaced last and atomically, so a crash in between
  // leaves an old state the pages file no longer matches: load() rejects it.
  void save(const ShippedState& state, const std::vector<uint32_t>& changed, bool full);

  // Forgets the state (after a snapshot decided a new history).
  void remove();

 private:
  void ensure_dir();

  std::string m_dir;
  std::string m_replica_url;
  std::string m_state_path;
  std::string m_pages_path;
  bool m_pages_written = false;  // the pages file is this store's last save: updated in place
};

}  // namespace walship
