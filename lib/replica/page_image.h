// A database file being rebuilt from replica files, page by page, with its
// whole-database checksum kept up to date so that every step of the chain is
// proven (DESIGN.md, "Chain rule").
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lib/format/replica_file.h"

namespace walship {

class PageImage {
 public:
  // Writes into `fd` (owned by the caller), named `path` in messages.
  PageImage(int fd, std::string path);

  // Writes every page of a snapshot into the (empty) file; it comes first.
  // `name` is the object's name for messages.
  // Throws Failure if the snapshot's checksums disagree with its pages.
  void apply_snapshot(format::ReplicaReader& reader, const std::string& name);
  // Copies every page of the local database `db_path` (as a read
  // transaction sees it, its WAL included) into the (empty) file, in place
  // of a snapshot: restore --delta. The image is then at no TXID until
  // set_point() says which point of the replica those pages are.
  void copy_database(const std::string& db_path);
  void set_point(uint64_t txid, uint64_t commit_time_ms);

  // Applies a delta after checking it chains onto the current state. With
  // Chain::overlapping (the first delta on a copied database), it may start
  // before the current TXID + 1 if it ends after it (chain_from_point): its
  // trailer's checksum proves the result.
  enum class Chain { exact, overlapping };
  void apply_delta(format::ReplicaReader& reader, const std::string& name, Chain chain = Chain::exact);
  // Truncates the file to its database size.
  void finish();

  uint64_t txid() const { return m_txid; }
  uint64_t checksum() const { return m_checksum; }
  uint32_t db_pages() const { return m_db_pages; }
  uint32_t page_size() const { return m_page_size; }
  uint64_t commit_time_ms() const { return m_commit_time_ms; }

 private:
  void write_frame(const std::vector<format::PageRef>& pages);
  void check_post_checksum(format::ReplicaReader& reader, const std::string& name);

  int m_fd;
  std::string m_path;
  uint32_t m_page_size = 0;
  uint32_t m_db_pages = 0;
  uint64_t m_txid = 0;
  uint64_t m_checksum = 0;
  uint64_t m_commit_time_ms = 0;
  std::vector<std::span<const std::byte>> m_parts;  // write_frame's, kept to reuse its memory
};

}  // namespace walship
