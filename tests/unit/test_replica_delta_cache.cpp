// The compaction cache: copies read back byte for byte, the limit past which
// nothing is kept, files removed once what they hold is dropped, no
// descriptor held between uses, and the files of gone processes removed.
#include <dirent.h>
#include <doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
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

// Files of the cache's naming in `dir`.
int cache_files(const std::string& dir) {
  int n = 0;
  DIR* d = ::opendir(dir.c_str());
  while (const dirent* entry = ::readdir(d)) n += std::string(entry->d_name).starts_with(".walship-cache-");
  ::closedir(d);
  return n;
}

void touch(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  REQUIRE(fd);
}

}  // namespace

TEST_CASE(
    "the compaction cache gives back what it kept, keeps nothing past its limit, holds no descriptor, and "
    "removes "
    "emptied files") {
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
  CHECK(cache_files(dir.path()) == 2);  // one file for each bucket
  CHECK(open_fds() == fds_before);      // none of them open
  cache.drop("deltas/L0/a");
  CHECK(cache_files(dir.path()) == 1);
  CHECK(read_back(cache, "deltas/L0/a") == "(not kept)");
  CHECK(cache.keep("deltas/L0/c", 0, 8, spool_of(dir.path(), a).get(), a.size()));
  CHECK(read_back(cache, "deltas/L0/c") == a);
  CHECK(read_back(cache, "deltas/L0/b") == b);  // beside it in bucket 8's file
  cache.retain({"deltas/L0/c"});
  CHECK(read_back(cache, "deltas/L0/b") == "(not kept)");
  CHECK(cache.bytes() == a.size());
  cache.drop("deltas/L0/c");
  CHECK(cache.bytes() == 0);
  CHECK(cache_files(dir.path()) == 0);
  CHECK(open_fds() == fds_before);
}

TEST_CASE("a new compaction cache removes the files of processes that are gone, and only those") {
  test::ScratchDir dir;
  // A pid that no longer runs: a child that has exited and been reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  REQUIRE(child > 0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  const std::string gone = dir.path() + "/.walship-cache-" + std::to_string(child) + "-12345-0";
  const std::string ours_before = dir.path() + "/.walship-cache-" + std::to_string(::getpid()) + "-12345-0";
  const std::string live = dir.path() + "/.walship-cache-" + std::to_string(::getppid()) + "-12345-0";
  const std::string other = dir.path() + "/.walship-anon-x";
  for (const std::string& path : {gone, ours_before, live, other}) touch(path);
  DeltaCache first(dir.path(), 1000);
  CHECK(::access(gone.c_str(), F_OK) != 0);
  CHECK(::access(ours_before.c_str(), F_OK) != 0);  // our pid, an earlier process's nonce
  CHECK(::access(live.c_str(), F_OK) == 0);         // a process that runs
  CHECK(::access(other.c_str(), F_OK) == 0);        // not the cache's
  const std::string text(20, 'x');
  REQUIRE(first.keep("deltas/L0/a", 0, 1, spool_of(dir.path(), text).get(), text.size()));
  DeltaCache second(dir.path(), 1000);  // another target of the same database
  CHECK(read_back(first, "deltas/L0/a") == text);
}

TEST_CASE("a cache file removed behind the cache's back is a miss, never other bytes") {
  test::ScratchDir dir;
  DeltaCache cache(dir.path(), 1000);
  const std::string text(20, 'x');
  REQUIRE(cache.keep("deltas/L0/a", 0, 1, spool_of(dir.path(), text).get(), text.size()));
  DIR* d = ::opendir(dir.path().c_str());
  while (const dirent* entry = ::readdir(d)) {
    if (std::string(entry->d_name).starts_with(".walship-cache-"))
      ::unlink((dir.path() + "/" + entry->d_name).c_str());
  }
  ::closedir(d);
  CHECK(read_back(cache, "deltas/L0/a") == "(not kept)");
  CHECK_FALSE(cache.keep("deltas/L0/b", 0, 1, spool_of(dir.path(), text).get(), text.size()));
  CHECK(cache_files(dir.path()) == 0);  // not created again
}

TEST_CASE("a spool shorter than it claims is not kept") {
  test::ScratchDir dir;
  DeltaCache cache(dir.path(), 1000);
  CHECK_FALSE(cache.keep("deltas/L0/a", 0, 1, spool_of(dir.path(), "short").get(), 50));
  CHECK(cache.bytes() == 0);
  CHECK(read_back(cache, "deltas/L0/a") == "(not kept)");
}
