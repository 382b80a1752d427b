#include "lib/replica/page_image.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/replica/db_file.h"
#include "lib/replica/snapshot.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"

namespace walship {

namespace {

std::string hex64(uint64_t v) { return format::txid_hex(v); }

}  // namespace

PageImage::PageImage(int fd, std::string path) : m_fd(fd), m_path(std::move(path)) {}

void PageImage::write_frame(const std::vector<format::PageRef>& pages) {
  // One pwritev per run of consecutive pages, straight from the decoded
  // frame: a snapshot frame is one run, so a 1 GiB restore makes about a
  // thousand writes, not 262144, and copies nothing.
  size_t i = 0;
  while (i < pages.size()) {
    size_t j = i + 1;
    while (j < pages.size() && pages[j].pgno == pages[j - 1].pgno + 1) ++j;
    m_parts.clear();
    for (size_t k = i; k < j; ++k) m_parts.push_back(pages[k].data);
    pwritev_all(m_fd, m_parts, static_cast<uint64_t>(pages[i].pgno - 1) * m_page_size, m_path);
    i = j;
  }
}

void PageImage::check_post_checksum(format::ReplicaReader& reader, const std::string& name) {
  if (reader.trailer().post_checksum != m_checksum) {
    throw Failure("replica file '" + name + "' does not reproduce the database it describes (checksum " +
                  hex64(m_checksum) + ", expected " + hex64(reader.trailer().post_checksum) +
                  "): the replica is corrupt; run walship verify");
  }
}

void PageImage::apply_snapshot(format::ReplicaReader& reader, const std::string& name) {
  const format::FileHeader& header = reader.header();
  if (header.kind != format::FileKind::snapshot) {
    throw Failure("replica file '" + name + "' is not a snapshot: the object was renamed or corrupted");
  }
  m_page_size = header.page_size;
  m_db_pages = header.db_pages;
  m_txid = header.max_txid;
  m_commit_time_ms = header.commit_time_ms;
  m_checksum = 0;
  // A snapshot is most of a restore's work: its frames are decompressed and
  // their pages hashed on every core, ahead of the writes here.
  reader.set_decode_threads(static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u)));
  reader.set_page_hashing(true);
  std::vector<format::PageRef> pages;
  while (reader.next_frame(pages)) {
    m_checksum ^= reader.frame_hash();
    write_frame(pages);
  }
  check_post_checksum(reader, name);
}

void PageImage::copy_database(const std::string& db_path) {
  const DbFileInfo info = check_db_file(db_path);
  sqlite::Database db(at_rest_uri(db_path), SQLITE_OPEN_READONLY);
  db.set_busy_timeout(k_db_read_busy_timeout_ms);
  db.exec("BEGIN");
  m_page_size = info.page_size;
  m_db_pages = static_cast<uint32_t>(db.query_int("PRAGMA main.page_count"));
  m_txid = 0;
  m_commit_time_ms = 0;
  format::DbChecksum sum;
  // Runs of pages go out in writes of about a frame's size.
  const size_t run_pages = format::pages_per_frame(m_page_size);
  std::vector<std::byte> run;
  run.reserve(run_pages * m_page_size);
  uint32_t run_first = 1;
  const auto flush = [&] {
    if (run.empty()) return;
    pwrite_all(m_fd, run, static_cast<uint64_t>(run_first - 1) * m_page_size, m_path);
    run.clear();
  };
  for_each_db_page(db, m_page_size, [&](uint32_t pgno, std::span<const std::byte> page) {
    if (pgno > m_db_pages) {
      throw Failure("database '" + db_path + "' changed size while reading it in one transaction");
    }
    if (run.empty() || pgno != run_first + run.size() / m_page_size ||
        run.size() / m_page_size >= run_pages) {
      flush();
      run_first = pgno;
    }
    run.insert(run.end(), page.begin(), page.end());
    sum.add(pgno, page);
  });
  flush();
  db.exec("COMMIT");
  m_checksum = sum.value();
}

void PageImage::set_point(uint64_t txid, uint64_t commit_time_ms) {
  m_txid = txid;
  m_commit_time_ms = commit_time_ms;
}

void PageImage::apply_delta(format::ReplicaReader& reader, const std::string& name, Chain chain) {
  const format::FileHeader& header = reader.header();
  if (header.kind != format::FileKind::delta) {
    throw Failure("replica file '" + name + "' is not a delta: the object was renamed or corrupted");
  }
  if (header.page_size != m_page_size) {
    throw Failure("replica file '" + name + "' has page size " + std::to_string(header.page_size) +
                  " but the database has " + std::to_string(m_page_size) + ": the replica is corrupt");
  }
  const bool overlaps = chain == Chain::overlapping && header.min_txid <= m_txid && header.max_txid > m_txid;
  if (!overlaps && (header.min_txid != m_txid + 1 || header.pre_checksum != m_checksum)) {
    throw Failure("replica file '" + name + "' does not chain onto TXID " + hex64(m_txid) +
                  " (it starts at " + hex64(header.min_txid) + " from checksum " +
                  hex64(header.pre_checksum) + ", the database is at " + hex64(m_checksum) +
                  "): the replica is corrupt; run walship verify");
  }
  std::vector<format::PageRef> pages;
  std::vector<std::byte> old_page(m_page_size);
  while (reader.next_frame(pages)) {
    for (const format::PageRef& page : pages) {
      if (page.pgno <= m_db_pages) {
        const size_t n =
            pread_full(m_fd, old_page, static_cast<uint64_t>(page.pgno - 1) * m_page_size, m_path);
        if (n < old_page.size())
          std::fill(old_page.begin() + static_cast<ptrdiff_t>(n), old_page.end(), std::byte{0});
        m_checksum ^= format::page_hash(page.pgno, old_page);
      }
      m_checksum ^= format::page_hash(page.pgno, page.data);
    }
    write_frame(pages);
  }
  // Pages past the new end were dropped (VACUUM, incremental vacuum): take
  // their hashes out too. Pages past the old end that the delta does not carry
  // would be zero and make the checksum disagree, as they should.
  const uint32_t lock_page = format::lock_page(m_page_size);
  for (uint32_t pgno = header.db_pages + 1; pgno <= m_db_pages; ++pgno) {
    if (pgno == lock_page) continue;
    pread_full(m_fd, old_page, static_cast<uint64_t>(pgno - 1) * m_page_size, m_path);
    m_checksum ^= format::page_hash(pgno, old_page);
  }
  if (header.db_pages < m_db_pages) {
    m_db_pages = header.db_pages;
    finish();  // so a later delta that regrows the file never sees stale pages
  }
  m_db_pages = header.db_pages;
  m_txid = header.max_txid;
  m_commit_time_ms = header.commit_time_ms;
  check_post_checksum(reader, name);
}

void PageImage::finish() {
  if (::ftruncate(m_fd, static_cast<off_t>(static_cast<uint64_t>(m_db_pages) * m_page_size)) != 0) {
    throw Failure(errno_message("unable to truncate '" + m_path + "'", errno));
  }
}

}  // namespace walship
