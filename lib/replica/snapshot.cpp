#include "lib/replica/snapshot.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/db_file.h"
#include "lib/replica/lease.h"
#include "lib/replica/local_state.h"
#include "lib/replica/replica_listing.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/progress.h"
#include "lib/util/time.h"

namespace walship {

namespace {

constexpr int k_txid_race_attempts = 3;

// The spool lives beside the database (same filesystem, sized like it), or in
// TMPDIR when that directory is read-only to us.
UniqueFd open_spool(const std::string& dir) {
  try {
    return anonymous_file(dir);
  } catch (const Failure&) {
    const char* tmp = std::getenv("TMPDIR");
    return anonymous_file(tmp && *tmp ? tmp : "/tmp");
  }
}

// The identity the snapshot's lease records carry. A database this node's
// replicate ships to the replica carries on that replicate's writer id (its
// lineage), so the next replicate does not take the snapshot for another
// node's writes and itself for a node that came back stale.
LeaseIdentity snapshot_identity(const std::optional<ShippedState>& local) {
  LeaseIdentity me = this_process();
  if (local && !local->writer.empty()) me.writer = local->writer;
  return me;
}

}  // namespace

SnapshotResult run_snapshot(const SnapshotOptions& options, Storage& storage) {
  check_db_file(options.db_path);
  // Like replicate, a snapshot writes only under the replica's lease: never
  // beside a running replicate (whose chain it would break), and after a
  // writer that vanished only above a fence.
  const std::optional<ShippedState> local =
      LocalStateStore(local_state_dir(options.db_path), storage.url()).load();
  Lease lease(storage, options.lease_ttl_ms, false, {}, {}, snapshot_identity(local));
  const Lease::Taken taken = lease.acquire(false,
                                           "A running replicate writes snapshots itself (snapshot-interval): "
                                           "run walship snapshot only on a replica "
                                           "no replicate ships to");
  const std::string previous_writer = taken.previous ? taken.previous->holder.writer : "";
  bool new_fence = taken.fence;
  for (int attempt = 1;; ++attempt) {
    const ReplicaListing listing = list_replica(storage);
    HeaderCache headers(storage);
    const uint64_t newest = listing.empty() ? 0 : newest_txid(listing, headers);
    if (const auto shipped = behind_replica(local, newest, previous_writer))
      throw behind_error(options.db_path, storage.url(), *shipped, newest);
    const std::optional<uint64_t> fence =
        first_txid_fence(listing.fences, newest, new_fence, lease.generation());
    if (fence && new_fence) {
      write_fence(storage, {newest, *fence});
      new_fence = false;
    }
    const uint64_t txid = fence ? *fence : newest + 1;
    sqlite::Database db(options.db_path, SQLITE_OPEN_READONLY);
    db.set_busy_timeout(k_db_read_busy_timeout_ms);
    // The first read starts the read transaction: every page comes from this
    // one committed state, however the writer goes on.
    db.exec("BEGIN");
    SpooledSnapshot spool =
        spool_snapshot(db, txid, options.zstd_level, !options.quiet, dir_name(options.db_path), nullptr);
    db.exec("COMMIT");
    const std::string key = format::snapshot_key(txid);
    FdSource source(spool.fd.get(), spool.size, "snapshot spool for '" + options.db_path + "'", true);
    if (storage.put_if_absent(key, source)) {
      SnapshotResult result;
      result.key = key;
      result.txid = txid;
      result.db_pages = spool.header.db_pages;
      result.page_size = spool.header.page_size;
      result.db_bytes = static_cast<uint64_t>(spool.header.db_pages) * spool.header.page_size;
      result.object_bytes = spool.size;
      result.checksum = spool.checksum;
      result.commit_time_ms = spool.header.commit_time_ms;
      if (log_enabled(LogLevel::info)) {
        log(LogLevel::info, "snapshot written",
            {{"db", options.db_path},
             {"replica", storage.url()},
             {"txid", format::txid_hex(txid)},
             {"pages", result.db_pages},
             {"bytes", result.object_bytes}});
      }
      return result;  // ~Lease releases the lease
    }
    if (attempt == k_txid_race_attempts) {
      throw Failure("another process keeps writing snapshots to '" + storage.url() + "' (TXID " +
                    format::txid_hex(txid) + " was taken " + std::to_string(attempt) +
                    " times): stop the other writer and run again");
    }
    log(LogLevel::warn, "snapshot TXID taken by another writer, retrying",
        {{"replica", storage.url()}, {"txid", format::txid_hex(txid)}});
  }
}

void for_each_db_page(sqlite::Database& db, uint32_t page_size,
                      const std::function<void(uint32_t pgno, std::span<const std::byte> page)>& fn) {
  const uint32_t lock_page = format::lock_page(page_size);
  sqlite::Statement pages(db, "SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno");
  uint32_t expected = 1;
  while (pages.step()) {
    const auto pgno = static_cast<uint32_t>(pages.column_int64(0));
    if (pgno == lock_page) continue;
    const std::span<const std::byte> data = pages.column_blob(1);
    if (pgno != expected || data.size() != page_size) {
      throw Failure("database '" + db.path() + "' returned page " + std::to_string(pgno) +
                    " out of order while reading it: is it corrupt? run PRAGMA integrity_check");
    }
    fn(pgno, data);
    expected = pgno + 1 == lock_page ? pgno + 2 : pgno + 1;
  }
}

std::string at_rest_uri(const std::string& path) {
  struct stat st {};
  const bool has_wal = ::stat((path + "-wal").c_str(), &st) == 0 && st.st_size > 0;
  return has_wal ? path : sqlite::immutable_uri(path);
}

uint64_t database_checksum(const std::string& path) {
  const DbFileInfo info = check_db_file(path);
  sqlite::Database db(at_rest_uri(path), SQLITE_OPEN_READONLY);
  db.set_busy_timeout(k_db_read_busy_timeout_ms);
  db.exec("BEGIN");
  format::DbChecksum sum;
  for_each_db_page(db, info.page_size,
                   [&](uint32_t pgno, std::span<const std::byte> page) { sum.add(pgno, page); });
  db.exec("COMMIT");
  return sum.value();
}

SpooledSnapshot spool_snapshot(sqlite::Database& db, uint64_t txid, int zstd_level, bool progress_bar,
                               const std::string& spool_dir, std::vector<uint64_t>* page_hashes,
                               std::optional<uint64_t> commit_time_ms) {
  SpooledSnapshot spool;
  spool.header.kind = format::FileKind::snapshot;
  spool.header.page_size = static_cast<uint32_t>(db.query_int("PRAGMA main.page_size"));
  spool.header.db_pages = static_cast<uint32_t>(db.query_int("PRAGMA main.page_count"));
  spool.header.min_txid = txid;
  spool.header.max_txid = txid;
  spool.header.commit_time_ms = commit_time_ms.value_or(now_ms());
  if (page_hashes) page_hashes->assign(spool.header.db_pages, 0);

  spool.fd = open_spool(spool_dir);
  FdSink sink(spool.fd.get(), "snapshot spool for '" + db.path() + "'");
  format::ReplicaWriter writer(sink, spool.header, zstd_level);
  // Compression is most of a snapshot's CPU time; frames are independent.
  writer.set_compression_threads(static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u)));
  Progress progress("snapshot", static_cast<uint64_t>(spool.header.db_pages) * spool.header.page_size,
                    progress_bar);
  for_each_db_page(db, spool.header.page_size, [&](uint32_t pgno, std::span<const std::byte> data) {
    if (pgno > spool.header.db_pages) {
      throw Failure("database '" + db.path() + "' changed size while reading it in one transaction");
    }
    writer.add_page(pgno, data);
    const uint64_t hash = format::page_hash(pgno, data);
    spool.checksum ^= hash;
    if (page_hashes) (*page_hashes)[pgno - 1] = hash;
    progress.add(data.size());
  });
  writer.finish(spool.checksum);
  progress.finish();
  spool.size = writer.bytes_written();
  return spool;
}

}  // namespace walship
