// The compaction cache: copies read back byte for byte, the limit past which
// nothing is kept, and files closed once what they hold is dropped.
#include <dirent.h>
#include <doctest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "lib/replica/delta_cache.h"
#include "lib/util/byte_stream.h"
#include "lib/util/fs.h"
#include "tests/unit/support.h"

using namespace walship;

namespace {

// An anonymous file holding `text`, as a delta's spool would.
UniqueFd spool_of(const std::string& dir, const std::string& text) {
  UniqueFd fd = anonymous_file(dir);
  pwrite_all(fd.get(), std::as_bytes(std::span(text.data(), text.size())), 0, "spool");
  return fd;
}

std::string read_back(const DeltaCache& cache, const std::string& key) {
  MemorySink sink;
  if (!cache.read(key, sink)) return "(not kept)";
  return std::string(reinterpret_cast<const char*>(sink.data().data()), sink.data().size());
}

int open_fds() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  while (::readdir(dir) != nullptr) ++n;
  ::closedir(dir);
  return n;
}

}  // namespace

TEST_CASE(
    "the compaction cache gives back what it kept, keeps nothing past its limit, and closes emptied files") {
  test::ScratchDir dir;
  const int fds_before = open_fds();
  DeltaCache cache(dir.path(), 100);
  const std::string a(40, 'a');
  const std::string b = std::string(30, 'b') + "end";
  CHECK(cache.keep("deltas/L0/a", 0, 7, spool_of(dir.path(), a).get(), a.size()));
  CHECK(cache.keep("deltas/L0/b", 0, 8, spool_of(dir.path(), b).get(), b.size()));
  CHECK_FALSE(cache.keep("deltas/L0/a", 0, 7, spool_of(dir.path(), a).get(), a.size()));  // kept already
  CHECK(cache.bytes() == a.size() + b.size());
  // 73 bytes kept: 40 more would pass the limit of 100.
  CHECK_FALSE(cache.keep("deltas/L0/c", 0, 8, spool_of(dir.path(), a).get(), a.size()));
  CHECK(read_back(cache, "deltas/L0/a") == a);
  CHECK(read_back(cache, "deltas/L0/b") == b);
  CHECK(read_back(cache, "deltas/L0/c") == "(not kept)");
  CHECK(open_fds() == fds_before + 2);  // one file for each bucket
  cache.drop("deltas/L0/a");
  CHECK(open_fds() == fds_before + 1);
  CHECK(read_back(cache, "deltas/L0/a") == "(not kept)");
  CHECK(cache.keep("deltas/L0/c", 0, 8, spool_of(dir.path(), a).get(), a.size()));
  CHECK(read_back(cache, "deltas/L0/c") == a);
  CHECK(read_back(cache, "deltas/L0/b") == b);  // beside it in bucket 8's file
  cache.retain({"deltas/L0/c"});
  CHECK(read_back(cache, "deltas/L0/b") == "(not kept)");
  CHECK(cache.bytes() == a.size());
  cache.drop("deltas/L0/c");
  CHECK(cache.bytes() == 0);
  CHECK(open_fds() == fds_before);
}

TEST_CASE("a spool shorter than it claims is not kept") {
  test::ScratchDir dir;
  DeltaCache cache(dir.path(), 1000);
  CHECK_FALSE(cache.keep("deltas/L0/a", 0, 1, spool_of(dir.path(), "short").get(), 50));
  CHECK(cache.bytes() == 0);
  CHECK(read_back(cache, "deltas/L0/a") == "(not kept)");
}
