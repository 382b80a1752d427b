// The sqlite_dbpage virtual table as third_party/sqlite/dbpage-resize.patch
// makes it: one write transaction can set any pages, grow the database past
// its end and truncate it, and a reader on another connection sees the whole
// transaction or none of it. serve-replica applies every delta this way.
#include <doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "lib/sqlite/sqlite.h"
#include "tests/unit/support.h"

using walship::sqlite::Database;
using walship::sqlite::Statement;
using walship::test::ScratchDir;

namespace {

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// The database's bytes with its WAL checkpointed into the file.
std::vector<std::byte> checkpointed_image(const std::string& path) {
  {
    Database db(path, SQLITE_OPEN_READWRITE);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  return read_file(path);
}

// Three states of one WAL database, as file images: `small` (rows 1..40 and
// a padding table), `big` (rows 1..400: the database grew) and `shrunk`
// (rows 1..20 after a DELETE, DROP TABLE and VACUUM: smaller than both).
struct Images {
  uint32_t page_size = 0;
  std::vector<std::byte> small, big, shrunk;
};

Images make_images(const std::string& dir, uint32_t page_size) {
  const std::string path = dir + "/source.db";
  Images images;
  images.page_size = page_size;
  {
    Database db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    db.exec("PRAGMA page_size=" + std::to_string(page_size));
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    db.exec("CREATE TABLE meta(n INTEGER NOT NULL)");
    db.exec(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 40) "
        "INSERT INTO t SELECT i, printf('%.*c', 700, char(65 + i % 26)) FROM c");
    db.exec("INSERT INTO meta VALUES(40)");
    // Dropped before `shrunk`, so that it is smaller than `small` at any page size.
    db.exec("CREATE TABLE pad(b BLOB NOT NULL)");
    db.exec("INSERT INTO pad VALUES(randomblob(300000))");
  }
  images.small = checkpointed_image(path);
  {
    Database db(path, SQLITE_OPEN_READWRITE);
    db.exec(
        "WITH RECURSIVE c(i) AS (SELECT 41 UNION ALL SELECT i + 1 FROM c WHERE i < 400) "
        "INSERT INTO t SELECT i, printf('%.*c', 700, char(65 + i % 26)) FROM c");
    db.exec("UPDATE meta SET n = 400");
  }
  images.big = checkpointed_image(path);
  {
    Database db(path, SQLITE_OPEN_READWRITE);
    db.exec("DELETE FROM t WHERE id > 20");
    db.exec("DROP TABLE pad");
    db.exec("UPDATE meta SET n = 20");
    db.exec("VACUUM");
  }
  images.shrunk = checkpointed_image(path);
  REQUIRE(images.big.size() > images.small.size());
  REQUIRE(images.shrunk.size() < images.small.size());
  return images;
}

uint32_t pages_of(const Images& images, const std::vector<std::byte>& image) {
  return static_cast<uint32_t>(image.size() / images.page_size);
}

// Writes pages 2..N of `image` through sqlite_dbpage (no BEGIN/COMMIT here).
// Page 1 goes last, through write_page_one(): it holds the schema cookie, and
// once it changes every later statement of the transaction would re-read the
// schema through b-tree pages this connection cached before they were
// overwritten underneath it.
void write_pages(Database& db, const Images& images, const std::vector<std::byte>& image) {
  Statement insert(db, "INSERT INTO sqlite_dbpage(pgno, data) VALUES(?1, ?2)");
  for (uint32_t pgno = 2; pgno <= pages_of(images, image); ++pgno) {
    insert.reset();
    insert.bind_int64(1, pgno);
    insert.bind_blob(
        2, std::span(image).subspan(static_cast<size_t>(pgno - 1) * images.page_size, images.page_size));
    insert.step();
  }
}

void write_page_one(Database& db, const Images& images, const std::vector<std::byte>& image) {
  Statement insert(db, "INSERT INTO sqlite_dbpage(pgno, data) VALUES(1, ?1)");
  insert.bind_blob(1, std::span(image).first(images.page_size));
  insert.step();
}

// After a transaction that wrote pages, this connection's cached b-tree pages
// may describe their old content: drop them.
void reset_cache(Database& db) {
  REQUIRE(sqlite3_file_control(db.handle(), "main", SQLITE_FCNTL_RESET_CACHE, nullptr) == SQLITE_OK);
}

void truncate_to(Database& db, uint32_t pages) {
  db.exec("INSERT INTO sqlite_dbpage(pgno, data) VALUES(" + std::to_string(pages) + ", NULL)");
}

// What a reader sees: (rows of t, meta.n, page_count); rows == n in every
// whole state of the source.
struct View {
  int64_t rows = 0;
  int64_t n = 0;
  int64_t pages = 0;
};

View view(Database& db) {
  return {db.query_int("SELECT count(*) FROM t"), db.query_int("SELECT n FROM meta"),
          db.query_int("PRAGMA page_count")};
}

std::string ro_uri(const std::string& path) { return "file:" + path + "?mode=ro"; }

}  // namespace

TEST_SUITE_BEGIN("sqlite/dbpage");

TEST_CASE("one transaction grows a WAL database past its end, and readers see all of it or nothing") {
  ScratchDir dir;
  const Images images = make_images(dir.path(), 4096);
  const std::string path = dir.path() + "/follower.db";
  write_file(path, images.small);

  Database writer(path, SQLITE_OPEN_READWRITE);
  REQUIRE(writer.query_text("PRAGMA journal_mode") == "wal");
  Database reader(ro_uri(path), SQLITE_OPEN_READONLY);
  Database pinned(ro_uri(path), SQLITE_OPEN_READONLY);
  pinned.exec("BEGIN");
  CHECK(view(pinned).n == 40);

  writer.exec("BEGIN IMMEDIATE");
  write_pages(writer, images, images.big);
  write_page_one(writer, images, images.big);
  // Mid-transaction: another connection still sees the old state.
  const View during = view(reader);
  CHECK(during.rows == 40);
  CHECK(during.n == 40);
  CHECK(during.pages == pages_of(images, images.small));
  writer.exec("COMMIT");

  const View after = view(reader);
  CHECK(after.rows == 400);
  CHECK(after.n == 400);
  CHECK(after.pages == pages_of(images, images.big));
  // A read transaction opened before the commit keeps its snapshot.
  const View old = view(pinned);
  CHECK(old.rows == 40);
  CHECK(old.pages == pages_of(images, images.small));
  pinned.exec("COMMIT");
  CHECK(view(pinned).n == 400);

  CHECK(reader.query_text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("inserting page N with NULL data truncates the database to N pages in the same transaction") {
  ScratchDir dir;
  const Images images = make_images(dir.path(), 4096);
  const std::string path = dir.path() + "/follower.db";
  write_file(path, images.big);

  Database writer(path, SQLITE_OPEN_READWRITE);
  Database reader(ro_uri(path), SQLITE_OPEN_READONLY);
  writer.exec("BEGIN IMMEDIATE");
  write_pages(writer, images, images.shrunk);
  truncate_to(writer, pages_of(images, images.shrunk));
  write_page_one(writer, images, images.shrunk);
  CHECK(view(reader).n == 400);
  writer.exec("COMMIT");
  reset_cache(writer);
  // The writer's own connection reads the new schema and content too.
  CHECK(view(writer).n == 20);

  const View after = view(reader);
  CHECK(after.rows == 20);
  CHECK(after.n == 20);
  CHECK(after.pages == pages_of(images, images.shrunk));
  CHECK(reader.query_text("PRAGMA integrity_check") == "ok");
  writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  CHECK(read_file(path) == images.shrunk);
}

TEST_CASE("growing and shrinking in one transaction ends byte-equal to the target image") {
  for (const uint32_t page_size : {512u, 4096u, 65536u}) {
    CAPTURE(page_size);
    ScratchDir dir;
    const Images images = make_images(dir.path(), page_size);
    const std::string path = dir.path() + "/follower.db";
    write_file(path, images.small);

    Database writer(path, SQLITE_OPEN_READWRITE);
    Database reader(ro_uri(path), SQLITE_OPEN_READONLY);
    writer.exec("BEGIN IMMEDIATE");
    write_pages(writer, images, images.big);     // past the end: grows
    write_pages(writer, images, images.shrunk);  // then the smaller state
    truncate_to(writer, pages_of(images, images.shrunk));
    write_page_one(writer, images, images.shrunk);
    CHECK(view(reader).n == 40);
    writer.exec("COMMIT");
    reset_cache(writer);
    CHECK(view(reader).n == 20);
    CHECK(reader.query_text("PRAGMA integrity_check") == "ok");

    // And back up again, then checkpoint: the file is exactly the image.
    writer.exec("BEGIN IMMEDIATE");
    write_pages(writer, images, images.big);
    write_page_one(writer, images, images.big);
    writer.exec("COMMIT");
    reset_cache(writer);
    CHECK(view(reader).n == 400);
    CHECK(view(writer).n == 400);
    CHECK(reader.query_text("PRAGMA integrity_check") == "ok");
    writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    CHECK(read_file(path) == images.big);
  }
}

TEST_CASE("a rolled-back resize leaves the database as it was, and its truncation is forgotten") {
  ScratchDir dir;
  const Images images = make_images(dir.path(), 4096);
  const std::string path = dir.path() + "/follower.db";
  write_file(path, images.small);

  Database writer(path, SQLITE_OPEN_READWRITE);
  Database reader(ro_uri(path), SQLITE_OPEN_READONLY);
  writer.exec("BEGIN IMMEDIATE");
  write_pages(writer, images, images.big);
  truncate_to(writer, 2);
  write_page_one(writer, images, images.big);
  writer.exec("ROLLBACK");
  reset_cache(writer);
  CHECK(view(reader).n == 40);
  CHECK(view(reader).pages == pages_of(images, images.small));

  // The next transaction does not inherit the rolled-back truncation.
  writer.exec("BEGIN IMMEDIATE");
  write_pages(writer, images, images.big);
  write_page_one(writer, images, images.big);
  writer.exec("COMMIT");
  CHECK(view(reader).n == 400);
  CHECK(view(reader).pages == pages_of(images, images.big));
  writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  CHECK(read_file(path) == images.big);
}

TEST_CASE("page 1 is committed as written: SQLite stamps no change counter or version into it") {
  ScratchDir dir;
  const Images images = make_images(dir.path(), 4096);
  const std::string path = dir.path() + "/follower.db";
  write_file(path, images.small);
  std::vector<std::byte> page_one(images.big.begin(), images.big.begin() + 4096);
  // A change counter and library version no SQLite would write itself.
  for (const size_t offset : {24u, 92u, 96u}) {
    page_one[offset] = std::byte{0x7a};
    page_one[offset + 3] = std::byte{0x01};
  }
  std::vector<std::byte> target = images.big;
  std::copy(page_one.begin(), page_one.end(), target.begin());

  Database writer(path, SQLITE_OPEN_READWRITE);
  for (int round = 0; round < 2; ++round) {  // twice: the second starts from a kept page 1
    writer.exec("BEGIN IMMEDIATE");
    write_pages(writer, images, target);
    write_page_one(writer, images, target);
    writer.exec("COMMIT");
    reset_cache(writer);
    Database reader(ro_uri(path), SQLITE_OPEN_READONLY);
    Statement select(reader, "SELECT data FROM sqlite_dbpage WHERE pgno = 1");
    REQUIRE(select.step());
    const std::span<const std::byte> committed = select.column_blob(0);
    CHECK(std::equal(committed.begin(), committed.end(), page_one.begin(), page_one.end()));
  }
  // An ordinary write through the b-tree still stamps the counter as usual.
  writer.exec("CREATE TABLE other(x)");
  writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  const std::vector<std::byte> after = read_file(path);
  CHECK_FALSE(std::equal(after.begin() + 24, after.begin() + 28, page_one.begin() + 24));
}

TEST_CASE("a page of the wrong size is still refused") {
  ScratchDir dir;
  const Images images = make_images(dir.path(), 4096);
  const std::string path = dir.path() + "/follower.db";
  write_file(path, images.small);
  Database writer(path, SQLITE_OPEN_READWRITE);
  CHECK_THROWS_WITH(writer.exec("INSERT INTO sqlite_dbpage(pgno, data) VALUES(2, zeroblob(100))"),
                    doctest::Contains("bad page value"));
  CHECK_THROWS_WITH(writer.exec("INSERT INTO sqlite_dbpage(pgno, data) VALUES(0, zeroblob(4096))"),
                    doctest::Contains("bad page number"));
}

TEST_SUITE_END();
