#include <doctest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "lib/format/checksum.h"

using namespace walship::format;

namespace {

std::vector<std::byte> page_of(uint32_t page_size, uint32_t seed) {
  std::vector<std::byte> page(page_size);
  for (uint32_t i = 0; i < page_size; ++i) page[i] = static_cast<std::byte>((i * 31u + seed * 7u) >> 3);
  return page;
}

}  // namespace

TEST_SUITE_BEGIN("format/checksum");

TEST_CASE("page_hash is pinned: changing it would make every existing replica unreadable") {
  const std::vector<std::byte> zeros(4096);
  CHECK(page_hash(1, zeros) == 0xeca1fdafb7b0bd2aull);
  std::vector<std::byte> counting(512);
  for (size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<std::byte>(i);
  CHECK(page_hash(7, counting) == 0x82381142f3703860ull);
}

TEST_CASE("page_hash depends on the page number as well as the bytes") {
  const std::vector<std::byte> page = page_of(4096, 1);
  CHECK(page_hash(1, page) != page_hash(2, page));
  std::vector<std::byte> other = page;
  other[4095] ^= std::byte{1};
  CHECK(page_hash(1, page) != page_hash(1, other));
}

TEST_CASE("two equal pages at different numbers do not cancel out") {
  const std::vector<std::byte> page(1024);
  DbChecksum sum;
  sum.add(3, page);
  sum.add(4, page);
  CHECK(sum.value() != 0);
}

TEST_CASE("the whole-database checksum does not depend on the order pages are added") {
  std::vector<uint32_t> order(50);
  std::iota(order.begin(), order.end(), 1u);
  DbChecksum forward;
  for (const uint32_t pgno : order) forward.add(pgno, page_of(512, pgno));
  std::reverse(order.begin(), order.end());
  DbChecksum backward;
  for (const uint32_t pgno : order) backward.add(pgno, page_of(512, pgno));
  std::rotate(order.begin(), order.begin() + 17, order.end());
  DbChecksum rotated;
  for (const uint32_t pgno : order) rotated.add(pgno, page_of(512, pgno));
  CHECK(forward == backward);
  CHECK(forward == rotated);
  CHECK(forward.value() != 0);
}

TEST_CASE("removing a page undoes adding it, in any order") {
  DbChecksum base;
  base.add(1, page_of(4096, 1));
  base.add(2, page_of(4096, 2));
  DbChecksum changed = base;
  // A delta rewrites page 2: remove the old value, add the new one.
  changed.remove(2, page_of(4096, 2));
  changed.add(2, page_of(4096, 99));
  CHECK(changed != base);
  changed.remove(2, page_of(4096, 99));
  changed.add(2, page_of(4096, 2));
  CHECK(changed == base);

  DbChecksum sum;
  sum.add(5, page_of(512, 5));
  sum.remove(5, page_of(512, 5));
  CHECK(sum.value() == 0);
  sum.add_hash(page_hash(9, page_of(512, 9)));
  DbChecksum direct;
  direct.add(9, page_of(512, 9));
  CHECK(sum == direct);
  sum.remove_hash(page_hash(9, page_of(512, 9)));
  CHECK(sum == DbChecksum{});
}

TEST_CASE("the lock page is the page holding byte 2^30 for every page size") {
  CHECK(lock_page(512) == 2097153u);
  CHECK(lock_page(1024) == 1048577u);
  CHECK(lock_page(4096) == 262145u);
  CHECK(lock_page(65536) == 16385u);
  for (uint32_t page_size = 512; page_size <= 65536; page_size *= 2) {
    const uint64_t first_byte = uint64_t{lock_page(page_size) - 1} * page_size;
    CHECK(first_byte == uint64_t{1} << 30);
  }
}

TEST_CASE("a database stores every page but the lock page") {
  CHECK(stored_page_count(0, 4096) == 0);
  CHECK(stored_page_count(262144, 4096) == 262144);
  CHECK(stored_page_count(262145, 4096) == 262144);
  CHECK(stored_page_count(262146, 4096) == 262145);
  CHECK(stored_page_count(16384, 65536) == 16384);
  CHECK(stored_page_count(16385, 65536) == 16384);
  CHECK(stored_page_count(2097153, 512) == 2097152);
  CHECK(stored_page_count(0xffffffffu, 512) == 0xfffffffeull);
}

TEST_CASE("valid page sizes are the powers of two from 512 to 65536") {
  for (uint32_t page_size = 512; page_size <= 65536; page_size *= 2) CHECK(valid_page_size(page_size));
  CHECK_FALSE(valid_page_size(0));
  CHECK_FALSE(valid_page_size(256));
  CHECK_FALSE(valid_page_size(1000));
  CHECK_FALSE(valid_page_size(4097));
  CHECK_FALSE(valid_page_size(131072));
  CHECK_FALSE(valid_page_size(0x80000000u));
}

TEST_SUITE_END();
