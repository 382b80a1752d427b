// The one reader and writer of walship's local state files (the
// replicator's "<id>.state", serve-replica's "follow").
#include <doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "lib/util/error.h"
#include "lib/util/state_file.h"
#include "tests/unit/replica_builder.h"

using namespace walship;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE("a state file is its magic line, then one key and value a line, in the order set") {
  StateFields fields;
  fields.set("replica", "s3://bucket/app db");  // the value is the rest of the line, spaces and all
  fields.set_hex("txid", 0x2a);
  fields.set_hex("page_size", 4096, 8);
  fields.set_dec("commit_ms", 1795000000123);
  const std::string text = render_state_file("walship-test 1", fields);
  CHECK(text ==
        "walship-test 1\n"
        "replica s3://bucket/app db\n"
        "txid 000000000000002a\n"
        "page_size 00001000\n"
        "commit_ms 1795000000123\n");

  const std::optional<StateFields> parsed = parse_state_file(text, "walship-test 1");
  REQUIRE(parsed);
  CHECK(parsed->text("replica") == "s3://bucket/app db");
  CHECK(parsed->hex("txid") == 0x2a);
  CHECK(parsed->hex32("page_size") == 4096);
  CHECK(parsed->dec("commit_ms") == 1795000000123);
  CHECK_FALSE(parsed->text("missing"));
}

TEST_CASE("a state file of another kind or version, or with a malformed line, is not read") {
  const std::string good = "walship-test 1\nkey value\n";
  CHECK(parse_state_file(good, "walship-test 1"));
  CHECK_FALSE(parse_state_file(good, "walship-test 2"));
  CHECK_FALSE(parse_state_file("", "walship-test 1"));
  CHECK_FALSE(parse_state_file("walship-test 1 \nkey value\n", "walship-test 1"));
  CHECK_FALSE(parse_state_file("walship-test 1\nkeyvalue\n", "walship-test 1"));
  CHECK_FALSE(parse_state_file("walship-test 1\nkey value\n\n", "walship-test 1"));
  // The magic line alone, with or without its newline: a state without fields.
  CHECK(parse_state_file("walship-test 1", "walship-test 1"));
  CHECK(parse_state_file("walship-test 1\n", "walship-test 1"));
  // No newline after the last field: still read (the old readers read lines).
  CHECK(parse_state_file("walship-test 1\nkey value", "walship-test 1")->text("key") == "value");
}

TEST_CASE("state file numbers are strict: digits only, in range, the last value of a key counts") {
  const std::optional<StateFields> f = parse_state_file(
      "m\n"
      "h ff\nH FF\nx 0x1\nsign -1\nspace  1\nlong 10000000000000000\nwide 100000000\n"
      "d 18446744073709551615\nover 18446744073709551616\nempty \ntwice 1\ntwice 2\n",
      "m");
  REQUIRE(f);
  CHECK(f->hex("h") == 0xff);
  CHECK_FALSE(f->hex("H"));
  CHECK_FALSE(f->hex("x"));
  CHECK_FALSE(f->dec("sign"));
  CHECK_FALSE(f->dec("space"));
  CHECK_FALSE(f->hex("long"));  // 17 digits
  CHECK(f->hex("wide") == 0x100000000);
  CHECK_FALSE(f->hex32("wide"));
  CHECK(f->dec("d") == UINT64_MAX);
  CHECK_FALSE(f->dec("over"));
  CHECK_FALSE(f->dec("empty"));
  CHECK(f->text("empty") == "");
  CHECK(f->dec("twice") == 2);
}

TEST_CASE("writing a state file replaces it whole, with the mode asked, and leaves no temp file") {
  test::ScratchDir dir;
  const std::string path = dir.path() + "/x.state";
  StateFields first;
  first.set("n", "1");
  write_state_file(path, "walship-test 1", first, 0600);
  CHECK(read_state_file(path, "walship-test 1")->text("n") == "1");
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  // A temp file a killed process left is overwritten, never read.
  write_text(path + ".tmp", "garbage");
  StateFields second;
  second.set("n", "2");
  write_state_file(path, "walship-test 1", second, 0600);
  CHECK(read_text(path) == "walship-test 1\nn 2\n");
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);
}

TEST_CASE("a missing state file reads as none; an unwritable one fails naming the file") {
  test::ScratchDir dir;
  CHECK_FALSE(read_state_file(dir.path() + "/none", "m"));
  const std::string path = dir.path() + "/no-such-dir/x.state";
  try {
    write_state_file(path, "m", StateFields{}, 0600);
    FAIL("no error");
  } catch (const Failure& e) {
    CHECK(std::string(e.what()).find(path + ".tmp") != std::string::npos);
  }
}

TEST_CASE("state files written before the shared module still load (replicator and serve-replica)") {
  // As lib/replica/local_state.cpp wrote them.
  const std::optional<StateFields> shipped = parse_state_file(
      "walship-state 1\n"
      "replica file:///tmp/replica\n"
      "page_size 00001000\n"
      "txid 0000000000000007\n"
      "checksum 8899aabbccddeeff\n"
      "db_pages 00000003\n"
      "wal_salt1 12345678\n"
      "wal_salt2 9abcdef0\n"
      "wal_checkpoint_seq 00000001\n"
      "wal_offset 0000000000003060\n"
      "wal_checksum0 deadbeef\n"
      "wal_checksum1 0badf00d\n",
      "walship-state 1");
  REQUIRE(shipped);
  CHECK(shipped->text("replica") == "file:///tmp/replica");
  CHECK(shipped->hex32("page_size") == 4096);
  CHECK(shipped->hex("checksum") == 0x8899aabbccddeeff);
  CHECK(shipped->hex32("wal_checksum0") == 0xdeadbeef);
  CHECK(shipped->hex("wal_offset") == 0x3060);
  // As lib/replica/follower.cpp wrote them: hex TXIDs and checksums, decimal the rest.
  const std::optional<StateFields> follow = parse_state_file(
      "walship-follow 1\n"
      "replica s3://bucket/app\n"
      "txid 000000000000002a\n"
      "checksum 0123456789abcdef\n"
      "commit_ms 1795000000123\n"
      "db_pages 12\n"
      "page_size 4096\n"
      "pending_txid 0000000000000000\n"
      "pending_checksum 0000000000000000\n"
      "pending_commit_ms 0\n"
      "pending_db_pages 0\n",
      "walship-follow 1");
  REQUIRE(follow);
  CHECK(follow->hex("txid") == 42);
  CHECK(follow->dec("commit_ms") == 1795000000123);
  CHECK(follow->dec32("db_pages") == 12);
  CHECK(follow->dec32("page_size") == 4096);
  CHECK(follow->hex("pending_txid") == 0);
}
