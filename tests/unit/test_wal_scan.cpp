#include <doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "lib/replica/local_state.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/fs.h"
#include "lib/wal/wal_scan.h"

using namespace walship;

namespace {

std::string temp_dir() {
  std::string dir = (std::filesystem::temp_directory_path() / "walship-scan-XXXXXX").string();
  REQUIRE(::mkdtemp(dir.data()) != nullptr);
  return dir;
}

}  // namespace

TEST_CASE("scanning a live WAL finds whole transactions after a position, newest page versions") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/a.db";
  sqlite::Database db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("PRAGMA wal_autocheckpoint=0");
  db.exec("CREATE TABLE t(x)");
  const std::string wal_path = path + "-wal";
  UniqueFd wal_fd(::open(wal_path.c_str(), O_RDONLY));
  UniqueFd shm_fd(::open((path + "-shm").c_str(), O_RDONLY));
  REQUIRE(wal_fd);
  REQUIRE(shm_fd);

  auto header = wal::read_wal_header(wal_fd.get(), wal_path);
  REQUIRE(header);
  auto index = wal::read_wal_index_header(shm_fd.get(), path + "-shm");
  REQUIRE(index);
  CHECK(wal::wal_index_matches(*index, *header));
  const wal::WalPosition start = wal::WalPosition::start_of(*header);
  const wal::CommittedFrames first = wal::scan_wal(wal_fd.get(), wal_path, *header, start, index->max_frame);
  CHECK(first.commits == 1);
  CHECK(first.db_pages == 2);
  CHECK(first.end.frame_index() == index->max_frame);

  for (int i = 0; i < 3; ++i) db.exec("INSERT INTO t VALUES(randomblob(100))");
  index = wal::read_wal_index_header(shm_fd.get(), path + "-shm");
  const wal::CommittedFrames more =
      wal::scan_wal(wal_fd.get(), wal_path, *header, first.end, index->max_frame);
  CHECK(more.commits == 3);
  CHECK(more.frames == 3);
  REQUIRE(more.pages.size() == 1);  // page 2 three times: only the newest is kept
  CHECK(more.pages[0].first == 2);
  CHECK(more.pages[0].second == more.end.offset - header->page_size);

  // Nothing past the wal-index's committed frame count is returned.
  const wal::CommittedFrames capped =
      wal::scan_wal(wal_fd.get(), wal_path, *header, first.end, first.end.frame_index() + 1);
  CHECK(capped.commits == 1);
  // Nothing new: an empty result at the same position.
  const wal::CommittedFrames none =
      wal::scan_wal(wal_fd.get(), wal_path, *header, more.end, index->max_frame);
  CHECK(none.commits == 0);
  CHECK(none.end == more.end);
  std::filesystem::remove_all(dir);
}

TEST_CASE("the local state round-trips and is rejected when its page hashes disagree") {
  const std::string dir = temp_dir();
  LocalStateStore store(dir + "/db-walship", "file:///r");
  CHECK_FALSE(store.load());
  ShippedState state;
  state.page_size = 4096;
  state.txid = 42;
  state.page_hashes = {1, 2, 4, 0};
  state.db_pages = 4;
  state.checksum = 7;
  state.wal.salt1 = 9;
  state.wal.salt2 = 10;
  state.wal.page_size = 4096;
  state.wal.offset = 32 + 3 * (24 + 4096);
  state.wal.checksum = {11, 12};
  store.save(state, {}, true);
  auto loaded = store.load();
  REQUIRE(loaded);
  CHECK(loaded->txid == 42);
  CHECK(loaded->page_hashes == state.page_hashes);
  CHECK(loaded->wal == state.wal);

  // An update of one page in place.
  state.page_hashes[1] = 8;
  state.checksum = 1 ^ 8 ^ 4;
  state.txid = 43;
  store.save(state, {2}, false);
  CHECK(store.load()->page_hashes == state.page_hashes);

  // Another replica's state is not this one's.
  CHECK_FALSE(LocalStateStore(dir + "/db-walship", "file:///other").load());

  // A state that claims a checksum its pages do not add up to is not trusted.
  state.checksum = 12345;
  store.save(state, {}, false);
  CHECK_FALSE(store.load());
  std::filesystem::remove_all(dir);
}

TEST_CASE("a local state file written before the shared state-file module still loads") {
  const std::string dir = temp_dir();
  const std::string url = "file:///r";
  // The files LocalStateStore wrote: "<id>.state" and "<id>.pages" (8 bytes
  // a page, big-endian), <id> the replica URL's hash.
  {
    // The store names its files; a save creates them, then they are overwritten by hand.
    LocalStateStore probe(dir, url);
    ShippedState empty;
    probe.save(empty, {}, true);
  }
  std::string state_path;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".state") state_path = entry.path().string();
  }
  REQUIRE_FALSE(state_path.empty());
  std::ofstream(state_path) << "walship-state 1\n"
                               "replica file:///r\n"
                               "page_size 00001000\n"
                               "txid 0000000000000007\n"
                               "checksum 0000000000000003\n"
                               "db_pages 00000002\n"
                               "wal_salt1 12345678\n"
                               "wal_salt2 9abcdef0\n"
                               "wal_checkpoint_seq 00000001\n"
                               "wal_offset 0000000000002050\n"
                               "wal_checksum0 deadbeef\n"
                               "wal_checksum1 0badf00d\n";
  const std::string pages_path = state_path.substr(0, state_path.size() - 6) + ".pages";
  std::ofstream(pages_path, std::ios::binary | std::ios::trunc)
      << std::string("\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\2", 16);
  const std::optional<ShippedState> loaded = LocalStateStore(dir, url).load();
  REQUIRE(loaded);
  CHECK(loaded->page_size == 4096);
  CHECK(loaded->txid == 7);
  CHECK(loaded->checksum == 3);
  CHECK(loaded->db_pages == 2);
  CHECK(loaded->page_hashes == std::vector<uint64_t>{1, 2});
  CHECK(loaded->wal.salt1 == 0x12345678);
  CHECK(loaded->wal.salt2 == 0x9abcdef0);
  CHECK(loaded->wal.checkpoint_seq == 1);
  CHECK(loaded->wal.offset == 0x2050);
  CHECK(loaded->wal.checksum == wal::Checksum{0xdeadbeef, 0x0badf00d});
  CHECK(loaded->wal.page_size == 4096);
  std::filesystem::remove_all(dir);
}
