// Builds real replicas in a MemoryStorage without a replicator: a small
// rollback-journal SQLite database gets one row per transaction, and each
// transaction's changed pages become an L0 delta (or the whole file a
// snapshot), with the commit times the test chooses. Compaction is the real
// Compactor. Restores of what it writes are real SQLite databases.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/memory/memory_storage.h"
#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/compaction.h"
#include "lib/replica/replicator_options.h"
#include "lib/sqlite/sqlite.h"
#include "tests/unit/support.h"

namespace walship::test {

// Makes `app` an app's WAL database with table t(id, v), as the replicator
// tests write it. `fast`: no fsync (simulated time need not wait for the disk).
inline void init_wal_app(sqlite::Database& app, bool fast) {
  app.exec("PRAGMA journal_mode=WAL");
  if (fast) app.exec("PRAGMA synchronous=OFF");
  app.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
}

// Rows in table t of a database file.
inline int64_t count_rows(const std::string& path) {
  // immutable: no -wal or -shm beside a restored WAL-mode database
  sqlite::Database db("file:" + path + "?immutable=1", SQLITE_OPEN_READONLY);
  return db.query_int("SELECT count(*) FROM t");
}

class ReplicaBuilder {
 public:
  static constexpr uint32_t k_page_size = 512;

  explicit ReplicaBuilder(MemoryStorage& storage) : m_storage(storage) {
    m_db_path = m_dir.path() + "/src.db";
    sqlite::Database db(m_db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    db.exec("PRAGMA page_size=512");
    db.exec("PRAGMA synchronous=OFF");
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  }

  uint64_t txid() const { return m_txid; }
  const std::string& scratch() const { return m_dir.path(); }
  // Rows the database held at each TXID.
  const std::map<uint64_t, int64_t>& rows_at() const { return m_rows_at; }

  // One transaction (one row) shipped as the next TXID's L0 delta; the very
  // first call writes snapshot 1 instead.
  void commit(uint64_t time_ms) {
    insert_row();
    if (m_txid == 0) {
      snapshot(time_ms);
      return;
    }
    const std::vector<std::vector<std::byte>> pages = read_pages();
    format::FileHeader header{format::FileKind::delta,
                              k_page_size,
                              m_txid + 1,
                              m_txid + 1,
                              static_cast<uint32_t>(pages.size()),
                              time_ms,
                              m_checksum};
    MemorySink sink;
    format::ReplicaWriter writer(sink, header, 1);
    uint64_t checksum = m_checksum;
    for (uint32_t i = 0; i < pages.size(); ++i) {
      if (i < m_pages.size() && m_pages[i] == pages[i]) continue;
      if (i < m_pages.size()) checksum ^= format::page_hash(i + 1, m_pages[i]);
      checksum ^= format::page_hash(i + 1, pages[i]);
      writer.add_page(i + 1, pages[i]);
    }
    for (uint32_t i = static_cast<uint32_t>(pages.size()); i < m_pages.size(); ++i)
      checksum ^= format::page_hash(i + 1, m_pages[i]);
    writer.finish(checksum);
    MemorySource source(sink.data());
    m_storage.put(format::l0_delta_key(m_txid + 1), source);
    ++m_txid;
    m_checksum = checksum;
    m_pages = pages;
    m_rows_at[m_txid] = m_rows;
    m_compactor.add({format::l0_delta_key(m_txid), 0, m_txid, m_txid, time_ms});
  }

  // A snapshot of the current state at the current TXID (TXID 1 at first).
  void snapshot(uint64_t time_ms) {
    if (m_txid == 0) m_txid = 1;
    m_pages = read_pages();
    format::FileHeader header{format::FileKind::snapshot,
                              k_page_size,
                              m_txid,
                              m_txid,
                              static_cast<uint32_t>(m_pages.size()),
                              time_ms,
                              0};
    MemorySink sink;
    format::ReplicaWriter writer(sink, header, 1);
    m_checksum = 0;
    for (uint32_t i = 0; i < m_pages.size(); ++i) {
      writer.add_page(i + 1, m_pages[i]);
      m_checksum ^= format::page_hash(i + 1, m_pages[i]);
    }
    writer.finish(m_checksum);
    MemorySource source(sink.data());
    m_storage.put(format::snapshot_key(m_txid), source);
    m_rows_at[m_txid] = m_rows;
  }

  // Runs the real compaction (L1 per minute, L2 per hour, L3 per day).
  void compact(uint64_t now_ms) {
    ReplicatorOptions options;
    m_compactor.run(m_storage, options, static_cast<int64_t>(now_ms), m_dir.path());
  }

 private:
  void insert_row() {
    sqlite::Database db(m_db_path, SQLITE_OPEN_READWRITE);
    db.exec("PRAGMA synchronous=OFF");
    ++m_rows;
    db.exec("INSERT INTO t(v) VALUES ('row " + std::to_string(m_rows) + "')");
  }

  std::vector<std::vector<std::byte>> read_pages() const {
    std::ifstream in(m_db_path, std::ios::binary);
    std::vector<std::vector<std::byte>> pages;
    std::vector<std::byte> page(k_page_size);
    while (in.read(reinterpret_cast<char*>(page.data()), k_page_size)) pages.push_back(page);
    return pages;
  }

  MemoryStorage& m_storage;
  ScratchDir m_dir;
  std::string m_db_path;
  uint64_t m_txid = 0;
  uint64_t m_checksum = 0;
  int64_t m_rows = 0;
  std::vector<std::vector<std::byte>> m_pages;
  std::map<uint64_t, int64_t> m_rows_at;
  Compactor m_compactor;
};

}  // namespace walship::test
