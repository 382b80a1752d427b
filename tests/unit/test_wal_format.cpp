#include <doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "lib/sqlite/sqlite.h"
#include "lib/wal/wal_format.h"

using namespace walship;

namespace {

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

}  // namespace

TEST_CASE("a WAL written by SQLite parses, and its frame checksums chain to the last commit") {
  std::string dir = (std::filesystem::temp_directory_path() / "walship-wal-XXXXXX").string();
  REQUIRE(::mkdtemp(dir.data()) != nullptr);
  const std::string path = dir + "/a.db";
  {
    sqlite::Database db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("PRAGMA wal_autocheckpoint=0");
    db.exec("CREATE TABLE t(x)");
    for (int i = 0; i < 5; ++i) db.exec("INSERT INTO t VALUES(randomblob(3000))");
    const std::vector<std::byte> wal_bytes = read_file(path + "-wal");  // read while open: the WAL is kept
    const auto header = wal::parse_wal_header(wal_bytes);
    REQUIRE(header.has_value());
    CHECK(header->page_size == 4096);
    wal::Checksum running = header->checksum;
    size_t commits = 0;
    size_t frames = 0;
    for (size_t off = wal::k_wal_header_size;
         off + wal::k_frame_header_size + header->page_size <= wal_bytes.size();
         off += wal::k_frame_header_size + header->page_size) {
      const auto frame_bytes = std::span(wal_bytes).subspan(off, wal::k_frame_header_size);
      const auto page = std::span(wal_bytes).subspan(off + wal::k_frame_header_size, header->page_size);
      const wal::FrameHeader frame = wal::parse_frame_header(frame_bytes);
      wal::Checksum next;
      REQUIRE(wal::frame_is_valid(*header, frame, frame_bytes, page, running, next));
      running = next;
      ++frames;
      if (frame.commit_db_pages != 0) ++commits;
    }
    CHECK(commits == 6);  // CREATE TABLE and five INSERTs
    CHECK(frames >= commits);

    // A flipped page byte breaks the chain; a changed salt marks a frame of another generation.
    std::vector<std::byte> bad = wal_bytes;
    bad[wal::k_wal_header_size + wal::k_frame_header_size + 100] ^= std::byte{1};
    const auto first = std::span(bad).subspan(wal::k_wal_header_size, wal::k_frame_header_size);
    wal::Checksum ignored;
    CHECK_FALSE(wal::frame_is_valid(
        *header, wal::parse_frame_header(first), first,
        std::span(bad).subspan(wal::k_wal_header_size + wal::k_frame_header_size, header->page_size),
        header->checksum, ignored));
    wal::WalHeader other_generation = *header;
    other_generation.salt1 ^= 1;
    const auto good = std::span(wal_bytes).subspan(wal::k_wal_header_size, wal::k_frame_header_size);
    CHECK_FALSE(wal::frame_is_valid(
        other_generation, wal::parse_frame_header(good), good,
        std::span(wal_bytes).subspan(wal::k_wal_header_size + wal::k_frame_header_size, header->page_size),
        header->checksum, ignored));
    // A header with a bad checksum or magic is no WAL at all.
    std::vector<std::byte> bad_header(wal_bytes.begin(), wal_bytes.begin() + wal::k_wal_header_size);
    bad_header[20] ^= std::byte{1};
    CHECK_FALSE(wal::parse_wal_header(bad_header).has_value());
    bad_header = std::vector<std::byte>(wal_bytes.begin(), wal_bytes.begin() + wal::k_wal_header_size);
    bad_header[3] = std::byte{0x99};
    CHECK_FALSE(wal::parse_wal_header(bad_header).has_value());
  }
  std::filesystem::remove_all(dir);
}
