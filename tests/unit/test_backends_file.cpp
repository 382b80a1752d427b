// What only the file:// backend promises: nothing half-written is ever
// visible, temp files never leak, errors name the object and the errno text,
// and put_if_absent is atomic across processes sharing the filesystem.
#include <doctest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "backends/file/file_storage.h"
#include "lib/util/fs.h"
#include "tests/unit/support.h"

using namespace walship;
namespace fs = std::filesystem;

namespace {

using test::ScratchDir;
using test::StringSource;

void put_string(Storage& storage, const std::string& key, const std::string& value) {
  MemorySource source(as_bytes(value));
  storage.put(key, source);
}

std::optional<std::string> get_string(Storage& storage, const std::string& key) {
  MemorySink sink;
  if (!storage.get(key, sink)) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(sink.data().data()), sink.data().size());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> temp_files_under(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->path().filename().string().find(".walship-tmp-") != std::string::npos)
      found.push_back(it->path());
  }
  return found;
}

// Runs `body` in a forked child and returns what it wrote to the pipe, with
// its exit status: for things a test cannot do in its own process (drop root,
// lower a resource limit). The child never returns into doctest.
struct ChildResult {
  int status = -1;
  std::string output;
};

template <typename Body>
ChildResult run_in_child(Body body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    int code = 99;
    std::string message;
    try {
      code = body(message);
    } catch (const std::exception& e) {
      message = std::string("unexpected exception: ") + e.what();
    }
    if (!message.empty()) (void)!::write(fds[1], message.data(), message.size());
    ::_exit(code);
  }
  ::close(fds[1]);
  ChildResult result;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) result.output.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace

TEST_CASE("puts leave no temp files behind") {
  ScratchDir dir;
  FileStorage storage(dir.path() + "/r");
  put_string(storage, "snapshots/1.snap", "one");
  put_string(storage, "snapshots/1.snap", "one again");
  put_string(storage, "wal/1/1.wal", "w");
  StringSource first("lease-a");
  CHECK(storage.put_if_absent("lease", first));
  StringSource second("lease-b");
  CHECK_FALSE(storage.put_if_absent("lease", second));
  CHECK(temp_files_under(dir.path()).empty());
  CHECK(read_file(dir.path() + "/r/snapshots/1.snap") == "one again");
  CHECK(read_file(dir.path() + "/r/lease") == "lease-a");
}

TEST_CASE("a finished spool handed over is linked in whole, never copied, and only when it is absent") {
  ScratchDir dir;
  FileStorage storage(dir.path() + "/r");
  const auto spool = [&](const std::string& bytes) {
    UniqueFd fd = anonymous_file(dir.path());
    REQUIRE(::write(fd.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    return fd;
  };
  const auto inode = [](int fd) {
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    return st.st_ino;
  };
  const auto object_inode = [&](const std::string& key) {
    struct stat st {};
    REQUIRE(::stat((dir.path() + "/r/" + key).c_str(), &st) == 0);
    return st.st_ino;
  };
  // The first object under a prefix that does not exist yet: linked.
  UniqueFd first = spool("snapshot one");
  FdSource first_source(first.get(), 12, "spool", true);
  CHECK(storage.put_if_absent("snapshots/1.snap", first_source));
  CHECK(object_inode("snapshots/1.snap") == inode(first.get()));
  CHECK(read_file(dir.path() + "/r/snapshots/1.snap") == "snapshot one");
  struct stat st {};
  REQUIRE(::stat((dir.path() + "/r/snapshots/1.snap").c_str(), &st) == 0);
  const mode_t mask = ::umask(022);
  ::umask(mask);
  CHECK((st.st_mode & 0777) == (0666 & ~mask));
  // Taken: false, and the object stays as it was.
  UniqueFd second = spool("snapshot two");
  FdSource second_source(second.get(), 12, "spool", true);
  CHECK_FALSE(storage.put_if_absent("snapshots/1.snap", second_source));
  CHECK(read_file(dir.path() + "/r/snapshots/1.snap") == "snapshot one");
  // A source that is not the whole file, or not handed over: copied.
  UniqueFd longer = spool("snapshot three and more");
  FdSource part(longer.get(), 14, "spool", true);
  CHECK(storage.put_if_absent("snapshots/3.snap", part));
  CHECK(read_file(dir.path() + "/r/snapshots/3.snap") == "snapshot three");
  CHECK(object_inode("snapshots/3.snap") != inode(longer.get()));
  UniqueFd kept = spool("snapshot four");
  FdSource not_handed(kept.get(), 13, "spool");
  CHECK(storage.put_if_absent("snapshots/4.snap", not_handed));
  CHECK(object_inode("snapshots/4.snap") != inode(kept.get()));
  // A file with a name (it could be written on): copied.
  const std::string named = dir.path() + "/named";
  std::ofstream(named) << "snapshot five";
  UniqueFd named_fd(::open(named.c_str(), O_RDONLY | O_CLOEXEC));
  FdSource named_source(named_fd.get(), 13, "spool", true);
  CHECK(storage.put_if_absent("snapshots/5.snap", named_source));
  CHECK(object_inode("snapshots/5.snap") != inode(named_fd.get()));
  CHECK(read_file(dir.path() + "/r/snapshots/5.snap") == "snapshot five");
  CHECK(temp_files_under(dir.path()).empty());
}

TEST_CASE("a missing root lists as empty and the first put creates it with its parents") {
  ScratchDir dir;
  const std::string root = dir.path() + "/not/yet/there";
  FileStorage storage(root + "//");
  CHECK(storage.root() == root);
  CHECK(storage.list("").empty());
  CHECK(storage.list("snapshots/").empty());
  MemorySink sink;
  CHECK_FALSE(storage.get("snapshots/1.snap", sink));
  storage.remove({"snapshots/1.snap"});
  CHECK_FALSE(fs::exists(root));  // reading never creates anything

  put_string(storage, "snapshots/1.snap", "data");
  CHECK(read_file(root + "/snapshots/1.snap") == "data");
}

TEST_CASE("a temp file left by a crash before rename is not an object") {
  ScratchDir dir;
  FileStorage storage(dir.path());
  fs::create_directories(dir.path() + "/snapshots");
  // What a process killed between write and rename leaves behind.
  const std::string debris = dir.path() + "/snapshots/.1.snap.walship-tmp-0123456789abcdef";
  std::ofstream(debris) << "half a snapsh";
  std::ofstream(dir.path() + "/.lease.walship-tmp-feedface") << "x";

  CHECK(storage.list("").empty());
  CHECK(storage.list("snapshots/").empty());
  CHECK(storage.list("snapshots/.1").empty());
  CHECK(get_string(storage, "snapshots/1.snap") == std::nullopt);
  StringSource source("whole");
  CHECK(storage.put_if_absent("snapshots/1.snap", source));
  CHECK(storage.list("") == std::vector<ObjectInfo>{{"snapshots/1.snap", 5}});
}

TEST_CASE("keys that look like temp files are refused") {
  ScratchDir dir;
  FileStorage storage(dir.path());
  StringSource source("x");
  CHECK_THROWS_WITH_AS(storage.put(".x.walship-tmp-1", source), doctest::Contains("reserved for temp files"),
                       Failure);
  CHECK_THROWS_AS(storage.put("a/.x.walship-tmp-1/b", source), Failure);
  put_string(storage, ".hidden", "dotfiles are fine");
  CHECK(get_string(storage, ".hidden") == "dotfiles are fine");
}

TEST_CASE("a write into a read-only directory names the object and the errno text") {
  ScratchDir dir;
  const std::string root = dir.path() + "/r";
  fs::create_directories(root + "/snapshots");
  REQUIRE(::chmod((root + "/snapshots").c_str(), 0555) == 0);
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);

  // root ignores permissions, so the write is made by an unprivileged child.
  const ChildResult result = run_in_child([&](std::string& message) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      message = "unable to drop privileges";
      return 3;
    }
    FileStorage storage(root);
    StringSource source("snapshot");
    try {
      storage.put("snapshots/0000000000000001.snap", source);
    } catch (const StorageError& e) {
      message = e.what();
      return e.transient() ? 2 : 0;
    }
    message = "put succeeded";
    return 1;
  });
  INFO(result.output);
  CHECK(result.status == 0);
  CHECK(result.output ==
        "unable to write 'file://" + root + "/snapshots/0000000000000001.snap': Permission denied");
  CHECK(temp_files_under(dir.path()).empty());
  CHECK_FALSE(fs::exists(root + "/snapshots/0000000000000001.snap"));
}

TEST_CASE("a write the filesystem refuses midway leaves neither object nor temp file") {
  ScratchDir dir;
  const std::string root = dir.path() + "/r";
  // A file size limit makes write(2) fail with EFBIG part-way, as a full disk
  // fails with ENOSPC: a permanent error after some bytes are on disk.
  const ChildResult result = run_in_child([&](std::string& message) {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{64 << 10, 64 << 10};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 3;
    FileStorage storage(root);
    const std::string big(1 << 20, 'x');
    MemorySource source(as_bytes(big));
    try {
      storage.put("snapshots/big.snap", source);
    } catch (const StorageError& e) {
      message = e.what();
      return e.transient() ? 2 : 0;
    }
    return 1;
  });
  INFO(result.output);
  CHECK(result.status == 0);
  CHECK(result.output == "unable to write 'file://" + root + "/snapshots/big.snap': File too large");
  CHECK(temp_files_under(dir.path()).empty());
  CHECK_FALSE(fs::exists(root + "/snapshots/big.snap"));
}

TEST_CASE("a key below an existing object fails naming the key") {
  ScratchDir dir;
  FileStorage storage(dir.path());
  put_string(storage, "a", "object");
  StringSource source("x");
  try {
    storage.put("a/b", source);
    FAIL("put below an object succeeded");
  } catch (const StorageError& e) {
    CHECK(std::string(e.what()) == "unable to write 'file://" + dir.path() + "/a/b': Not a directory");
    CHECK_FALSE(e.transient());
  }
}

TEST_CASE("remove deletes the directories it empties but never the root") {
  ScratchDir dir;
  const std::string root = dir.path() + "/r";
  FileStorage storage(root);
  put_string(storage, "wal/1/1.wal", "a");
  put_string(storage, "wal/1/2.wal", "b");
  put_string(storage, "wal/2/1.wal", "c");
  storage.remove({"wal/1/1.wal", "wal/1/2.wal"});
  CHECK_FALSE(fs::exists(root + "/wal/1"));
  CHECK(fs::exists(root + "/wal/2/1.wal"));
  storage.remove({"wal/2/1.wal"});
  CHECK_FALSE(fs::exists(root + "/wal"));
  CHECK(fs::is_directory(root));
  put_string(storage, "wal/1/1.wal", "again");
  CHECK(get_string(storage, "wal/1/1.wal") == "again");
}

TEST_CASE("symlinks and other non-regular files are not objects") {
  ScratchDir dir;
  FileStorage storage(dir.path());
  put_string(storage, "real", "r");
  fs::create_symlink(dir.path() + "/real", dir.path() + "/link");
  fs::create_directory_symlink("/", dir.path() + "/loop");
  CHECK(storage.list("") == std::vector<ObjectInfo>{{"real", 1}});
}

TEST_CASE("the url percent-encodes the root path") {
  CHECK(FileStorage("/tmp/my dir/").url() == "file:///tmp/my%20dir");
  CHECK(FileStorage("/data//replicas/app.db").url() == "file:///data/replicas/app.db");
  CHECK(FileStorage("/").url() == "file:///");
  CHECK_THROWS_AS(FileStorage("relative/path"), Failure);
}

TEST_CASE("put_if_absent has exactly one winner across processes") {
  ScratchDir dir;
  const std::string root = dir.path() + "/r";
  constexpr int k_children = 5;
  constexpr int k_rounds = 25;
  for (int round = 0; round < k_rounds; ++round) {
    CAPTURE(round);
    const std::string key = "leases/round-" + std::to_string(round);
    // Children block on this pipe until the parent closes it, so they start
    // their put_if_absent at the same moment.
    int gate[2];
    REQUIRE(::pipe(gate) == 0);
    std::vector<pid_t> pids;
    for (int child = 0; child < k_children; ++child) {
      const pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        ::close(gate[1]);
        char c;
        (void)!::read(gate[0], &c, 1);
        int code = 2;
        try {
          FileStorage storage(root);
          // Large enough that the writes overlap in time.
          std::string content = "child-" + std::to_string(child) + "\n";
          content += std::string(256 << 10, static_cast<char>('a' + child));
          MemorySource source(as_bytes(content));
          code = storage.put_if_absent(key, source) ? 0 : 1;
        } catch (...) {
          code = 3;
        }
        ::_exit(code);
      }
      pids.push_back(pid);
    }
    ::close(gate[0]);
    ::close(gate[1]);

    int winners = 0;
    int winner = -1;
    for (int child = 0; child < k_children; ++child) {
      int status = 0;
      REQUIRE(::waitpid(pids[static_cast<size_t>(child)], &status, 0) == pids[static_cast<size_t>(child)]);
      REQUIRE(WIFEXITED(status));
      const int code = WEXITSTATUS(status);
      CHECK((code == 0 || code == 1));
      if (code == 0) {
        ++winners;
        winner = child;
      }
    }
    REQUIRE(winners == 1);
    std::string expected = "child-" + std::to_string(winner) + "\n";
    expected += std::string(256 << 10, static_cast<char>('a' + winner));
    FileStorage storage(root);
    CHECK(get_string(storage, key) == expected);
  }
  CHECK(temp_files_under(dir.path()).empty());
}
