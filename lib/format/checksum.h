// Whole-database checksums (DESIGN.md, "Replica layout"): the XOR of a 64-bit
// hash of (pgno, page) over every page but SQLite's lock page. XOR makes it
// order-independent and updatable in O(changed pages): removing a page's old
// hash is XOR-ing it in again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace walship::format {

// XXH3-64 of the page bytes seeded with the page number.
uint64_t page_hash(uint32_t pgno, std::span<const std::byte> page);

// The page that holds byte offset 2^30 (SQLite's PENDING_BYTE). It is never
// read, stored or hashed; it exists only in databases larger than 1 GiB.
inline uint32_t lock_page(uint32_t page_size) { return static_cast<uint32_t>(0x40000000u / page_size) + 1; }

// Pages a database of `db_pages` pages stores (every page but the lock page).
inline uint64_t stored_page_count(uint32_t db_pages, uint32_t page_size) {
  return db_pages >= lock_page(page_size) ? db_pages - 1u : db_pages;
}

inline bool valid_page_size(uint32_t page_size) {
  return page_size >= 512 && page_size <= 65536 && (page_size & (page_size - 1)) == 0;
}

// The running whole-database checksum. add() and remove() are the same XOR;
// both exist so call sites say which they mean (a delta removes a page's old
// value and adds its new one).
class DbChecksum {
 public:
  DbChecksum() = default;
  explicit DbChecksum(uint64_t value) : m_value(value) {}

  // Accounts for page `pgno` holding `page`.
  void add(uint32_t pgno, std::span<const std::byte> page) { m_value ^= page_hash(pgno, page); }
  // Takes page `pgno` holding `page` back out; add() then remove() is a no-op.
  void remove(uint32_t pgno, std::span<const std::byte> page) { m_value ^= page_hash(pgno, page); }
  // For callers that already hold a page_hash() (hashed in parallel, cached).
  void add_hash(uint64_t hash) { m_value ^= hash; }
  void remove_hash(uint64_t hash) { m_value ^= hash; }

  uint64_t value() const { return m_value; }
  bool operator==(const DbChecksum&) const = default;

 private:
  uint64_t m_value = 0;
};

}  // namespace walship::format
