// The wal-index (-shm) header and the positions decoded from it: pure
// decoding against hand-made bytes, and against what SQLite itself writes
// and hands out as a sqlite3_snapshot.
#include <doctest.h>
#include <fcntl.h>

#include <array>
#include <cstring>

#include "lib/sqlite/sqlite.h"
#include "lib/util/endian.h"
#include "lib/util/fs.h"
#include "lib/wal/wal_index.h"
#include "lib/wal/wal_scan.h"
#include "tests/unit/replica_builder.h"

using namespace walship;

namespace {

using IndexBytes = std::array<std::byte, wal::k_wal_index_header_size>;

void put_native32(std::byte* p, uint32_t v) { std::memcpy(p, &v, sizeof v); }

// One header copy as SQLite keeps it (native byte order, salts as in the WAL).
IndexBytes index_bytes(uint32_t change, uint32_t max_frame, wal::Checksum sum, uint32_t salt1,
                       uint32_t salt2) {
  IndexBytes bytes{};
  put_native32(bytes.data(), 3007000);
  put_native32(bytes.data() + 8, change);
  bytes[12] = std::byte{1};  // isInit
  put_native32(bytes.data() + 16, max_frame);
  put_native32(bytes.data() + 24, sum.s0);
  put_native32(bytes.data() + 28, sum.s1);
  put_be32(bytes.data() + 32, salt1);
  put_be32(bytes.data() + 36, salt2);
  return bytes;
}

std::array<std::byte, 2 * wal::k_wal_index_header_size> both(const IndexBytes& a, const IndexBytes& b) {
  std::array<std::byte, 2 * wal::k_wal_index_header_size> out{};
  std::memcpy(out.data(), a.data(), a.size());
  std::memcpy(out.data() + a.size(), b.data(), b.size());
  return out;
}

}  // namespace

TEST_CASE("a wal-index header copy decodes its frame count, change counter, checksum and salts") {
  const IndexBytes bytes = index_bytes(77, 12, {0xdeadbeef, 0x0badf00d}, 0x11223344, 0x55667788);
  const wal::WalIndexHeader index = wal::decode_wal_index_header(bytes);
  CHECK(index.initialised);
  CHECK(index.change == 77);
  CHECK(index.max_frame == 12);
  CHECK(index.frame_checksum == wal::Checksum{0xdeadbeef, 0x0badf00d});
  CHECK(index.salt1() == 0x11223344);
  CHECK(index.salt2() == 0x55667788);
  wal::WalHeader header;
  header.salt1 = 0x11223344;
  header.salt2 = 0x55667788;
  CHECK(wal::wal_index_matches(index, header));
  header.salt2 = 1;
  CHECK_FALSE(wal::wal_index_matches(index, header));
}

TEST_CASE("the two wal-index header copies are trusted only when they agree and say initialised") {
  const IndexBytes a = index_bytes(1, 5, {}, 1, 2);
  CHECK(wal::decode_wal_index(both(a, a))->max_frame == 5);
  // A writer between the two copies.
  CHECK_FALSE(wal::decode_wal_index(both(a, index_bytes(2, 6, {}, 1, 2))));
  IndexBytes uninitialised = a;
  uninitialised[12] = std::byte{0};
  CHECK_FALSE(wal::decode_wal_index(both(uninitialised, uninitialised)));
}

TEST_CASE("a read's position: its frames and checksum, and the WAL header's sequence in that generation") {
  const IndexBytes bytes = index_bytes(1, 3, {10, 20}, 7, 8);
  const wal::WalIndexHeader seen = wal::decode_wal_index_header(bytes);
  wal::WalHeader header;
  header.page_size = 4096;
  header.salt1 = 7;
  header.salt2 = 8;
  header.checkpoint_seq = 5;
  header.checksum = {1, 2};
  const wal::WalPosition at = wal::read_position(seen, 4096, header);
  CHECK(at.offset == wal::k_wal_header_size + 3 * (wal::k_frame_header_size + 4096));
  CHECK(at.frame_index() == 3);
  CHECK(at.checksum == wal::Checksum{10, 20});
  CHECK(at.checkpoint_seq == 5);
  CHECK(at.same_generation(header));

  // No frame seen: the running checksum is the WAL header's.
  const wal::WalPosition empty =
      wal::read_position(wal::decode_wal_index_header(index_bytes(1, 0, {}, 7, 8)), 4096, header);
  CHECK(empty.offset == wal::k_wal_header_size);
  CHECK(empty.checksum == header.checksum);
  CHECK(empty == wal::WalPosition::start_of(header));

  // A WAL already restarted into another generation lends nothing.
  header.salt1 = 9;
  const wal::WalPosition other = wal::read_position(seen, 4096, header);
  CHECK(other.checkpoint_seq == 0);
  CHECK(other.salt1 == 7);
  CHECK(wal::read_position(seen, 4096, std::nullopt).checkpoint_seq == 0);
}

TEST_CASE("SQLite's -shm and its sqlite3_snapshot decode to the WAL's end, and a checkpoint's backfill") {
  test::ScratchDir dir;
  const std::string path = dir.path() + "/a.db";
  sqlite::Database db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("PRAGMA wal_autocheckpoint=0");
  db.exec("CREATE TABLE t(x)");
  for (int i = 0; i < 3; ++i) db.exec("INSERT INTO t VALUES(randomblob(100))");
  const std::string wal_path = path + "-wal";
  const std::string shm_path = path + "-shm";
  UniqueFd wal_fd(::open(wal_path.c_str(), O_RDONLY));
  UniqueFd shm_fd(::open(shm_path.c_str(), O_RDONLY));
  REQUIRE(wal_fd);
  REQUIRE(shm_fd);
  const auto header = wal::read_wal_header(wal_fd.get(), wal_path);
  const auto index = wal::read_wal_index_header(shm_fd.get(), shm_path);
  REQUIRE(header);
  REQUIRE(index);
  CHECK(wal::wal_index_matches(*index, *header));
  const uint32_t page_size = header->page_size;
  const wal::CommittedFrames frames =
      wal::scan_wal(wal_fd.get(), wal_path, *header, wal::WalPosition::start_of(*header), index->max_frame);
  CHECK(frames.end.frame_index() == index->max_frame);

  // A read transaction's snapshot sees the same end, checksum and all.
  sqlite::Database reader(path, SQLITE_OPEN_READONLY);
  reader.exec("BEGIN");
  reader.query_int("SELECT count(*) FROM t");
  sqlite3_snapshot* snapshot = nullptr;
  REQUIRE(sqlite3_snapshot_get(reader.handle(), "main", &snapshot) == SQLITE_OK);
  IndexBytes bytes{};
  std::memcpy(bytes.data(), snapshot, bytes.size());
  sqlite3_snapshot_free(snapshot);
  const wal::WalPosition pinned = wal::read_position(wal::decode_wal_index_header(bytes), page_size, header);
  CHECK(pinned == frames.end);
  CHECK(wal::wal_holds(wal_fd.get(), wal_path, pinned));
  reader.exec("COMMIT");

  CHECK(wal::read_wal_backfilled(shm_fd.get(), shm_path) == 0);
  db.exec("PRAGMA wal_checkpoint(PASSIVE)");
  CHECK(wal::read_wal_backfilled(shm_fd.get(), shm_path) == index->max_frame);
}

TEST_CASE("a WAL holds a position only while its generation and the frame ending there are unchanged") {
  test::ScratchDir dir;
  const std::string path = dir.path() + "/a.db";
  sqlite::Database db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("PRAGMA wal_autocheckpoint=0");
  db.exec("CREATE TABLE t(x)");
  db.exec("INSERT INTO t VALUES(randomblob(100))");
  const std::string wal_path = path + "-wal";
  UniqueFd wal_fd(::open(wal_path.c_str(), O_RDONLY));
  UniqueFd shm_fd(::open((path + "-shm").c_str(), O_RDONLY));
  const auto header = wal::read_wal_header(wal_fd.get(), wal_path);
  REQUIRE(header);
  const auto index = wal::read_wal_index_header(shm_fd.get(), path + "-shm");
  const wal::WalPosition end =
      wal::scan_wal(wal_fd.get(), wal_path, *header, wal::WalPosition::start_of(*header), index->max_frame)
          .end;
  CHECK(wal::wal_holds(wal_fd.get(), wal_path, end));
  CHECK(wal::wal_holds(wal_fd.get(), wal_path, wal::WalPosition::start_of(*header)));
  CHECK_FALSE(wal::wal_holds(wal_fd.get(), wal_path, wal::WalPosition{}));
  wal::WalPosition wrong_sum = end;
  wrong_sum.checksum.s0 ^= 1;
  CHECK_FALSE(wal::wal_holds(wal_fd.get(), wal_path, wrong_sum));
  wal::WalPosition mid_frame = end;
  mid_frame.offset -= 8;
  CHECK_FALSE(wal::wal_holds(wal_fd.get(), wal_path, mid_frame));

  // Checkpointed and restarted: the same offsets, another generation.
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  db.exec("INSERT INTO t VALUES(randomblob(100))");
  db.exec("INSERT INTO t VALUES(randomblob(100))");
  CHECK_FALSE(wal::wal_holds(wal_fd.get(), wal_path, end));
}
