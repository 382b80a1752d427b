// One conformance suite every Storage backend passes (STYLE.md, "Tests").
// Each TEST_CASE_TEMPLATE runs once per backend in k_backends; plugging in a
// new backend (S3 against a scripted server, SFTP, GCS) is one fixture struct
// and one line in WALSHIP_CONFORMANCE_BACKENDS.
#include <doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backends/file/file_storage.h"
#include "backends/memory/memory_storage.h"
#include "backends/registry.h"
#include "backends/retrying_storage.h"
#include "backends/url.h"
#include "lib/storage/storage.h"
#include "lib/util/percent_encode.h"
#include "tests/unit/support.h"
#ifdef WALSHIP_TEST_GCS
#include "tests/unit/gcs_fixture.h"
#endif
#ifdef WALSHIP_TEST_SSHD
#include "tests/unit/sftp_fixture.h"
#endif
#ifdef WALSHIP_TEST_S3
#include "tests/unit/s3_fixture.h"
#endif

using namespace walship;

namespace {

using test::ScratchDir;
using test::StringSource;

// ---- the backends under test -------------------------------------------

struct MemoryBackend {
  std::unique_ptr<Storage> storage = std::make_unique<MemoryStorage>();
};

struct FileBackend {
  ScratchDir dir;
  // A root that does not exist yet: the first put must create it.
  std::unique_ptr<Storage> storage = std::make_unique<FileStorage>(dir.path() + "/replica");
};

// The same backend reached through the registry, with a root that needs
// percent-encoding.
struct FileUrlBackend {
  ScratchDir dir;
  std::unique_ptr<Storage> storage =
      open_storage("file://" + percent_encode(dir.path() + "/my replica", "/"));
};

// The retry wrapper must be transparent when nothing fails.
struct RetryingMemoryBackend {
  std::unique_ptr<Storage> storage = std::make_unique<RetryingStorage>(std::make_unique<MemoryStorage>());
};

// Remote backends whose test servers are installed (tests/CMakeLists.txt checks).
#ifdef WALSHIP_TEST_GCS
using test::GcsEmulatorBackend;
using test::GcsJwtBackend;
#define WALSHIP_GCS_BACKENDS , GcsJwtBackend, GcsEmulatorBackend
#else
#define WALSHIP_GCS_BACKENDS
#endif

#ifdef WALSHIP_TEST_SSHD
using test::SftpBackend;
#define WALSHIP_SFTP_BACKENDS , SftpBackend
#else
#define WALSHIP_SFTP_BACKENDS
#endif

#ifdef WALSHIP_TEST_S3
using test::S3NoConditionalBackend;
using test::S3PathStyleBackend;
using test::S3VirtualHostBackend;
#define WALSHIP_S3_BACKENDS , S3PathStyleBackend, S3VirtualHostBackend, S3NoConditionalBackend
#else
#define WALSHIP_S3_BACKENDS
#endif

#define WALSHIP_CONFORMANCE_BACKENDS          \
  MemoryBackend, FileBackend, FileUrlBackend, \
      RetryingMemoryBackend WALSHIP_GCS_BACKENDS WALSHIP_SFTP_BACKENDS WALSHIP_S3_BACKENDS

// ---- helpers --------------------------------------------------------------

std::vector<std::byte> pattern_bytes(size_t size, uint32_t seed = 1) {
  std::vector<std::byte> out(size);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : out) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>(x >> 24);
  }
  return out;
}

void put_string(Storage& storage, const std::string& key, const std::string& value) {
  MemorySource source(as_bytes(value));
  storage.put(key, source);
}

bool put_string_if_absent(Storage& storage, const std::string& key, const std::string& value) {
  MemorySource source(as_bytes(value));
  return storage.put_if_absent(key, source);
}

std::optional<std::string> get_string(Storage& storage, const std::string& key, const ByteRange& range = {}) {
  MemorySink sink;
  if (!storage.get(key, sink, range)) {
    CHECK(sink.data().empty());
    return std::nullopt;
  }
  return std::string(reinterpret_cast<const char*>(sink.data().data()), sink.data().size());
}

std::vector<std::string> keys_of(const std::vector<ObjectInfo>& objects) {
  std::vector<std::string> keys;
  for (const ObjectInfo& o : objects) keys.push_back(o.key);
  return keys;
}

// Records how the backend consumed the source and fed the sink, to check that
// nothing is done with the whole object in one piece.
class RecordingSink : public ByteSink {
 public:
  void write(std::span<const std::byte> data) override {
    m_data.insert(m_data.end(), data.begin(), data.end());
    m_writes += 1;
    m_largest = std::max(m_largest, data.size());
  }
  std::vector<std::byte> m_data;
  size_t m_writes = 0;
  size_t m_largest = 0;
};

// Gives `fail_after` bytes, then throws as a local file that turns unreadable.
class FailingSource : public ByteSource {
 public:
  FailingSource(std::vector<std::byte> data, size_t fail_after)
      : m_data(std::move(data)), m_fail_after(fail_after) {}
  uint64_t size() const override { return m_data.size(); }
  size_t read(std::span<std::byte> out) override {
    if (m_pos >= m_fail_after) throw Failure("unable to read 'source': Input/output error");
    const size_t n = std::min(out.size(), m_fail_after - m_pos);
    std::copy_n(m_data.begin() + static_cast<std::ptrdiff_t>(m_pos), n, out.begin());
    m_pos += n;
    return n;
  }
  void rewind() override { m_pos = 0; }

 private:
  std::vector<std::byte> m_data;
  size_t m_fail_after;
  size_t m_pos = 0;
};

// Claims more bytes than it has, as a file truncated while it is sent.
class ShortSource : public ByteSource {
 public:
  uint64_t size() const override { return 10; }
  size_t read(std::span<std::byte> out) override {
    if (m_done || out.empty()) return 0;
    m_done = true;
    const size_t n = std::min<size_t>(out.size(), 5);
    std::fill_n(out.begin(), n, std::byte{'x'});
    return n;
  }
  void rewind() override { m_done = false; }

 private:
  bool m_done = false;
};

}  // namespace

TEST_CASE_TEMPLATE("a put object reads back byte for byte", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes += static_cast<char>(i);
  put_string(storage, "snapshots/0000000000000001.snap", all_bytes);
  put_string(storage, "lease", "holder-1");
  CHECK(get_string(storage, "snapshots/0000000000000001.snap") == all_bytes);
  CHECK(get_string(storage, "lease") == "holder-1");
}

TEST_CASE_TEMPLATE("an empty object exists and reads back empty", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  put_string(storage, "empty", "");
  CHECK(get_string(storage, "empty") == "");
  CHECK(storage.list("") == std::vector<ObjectInfo>{{"empty", 0}});
  CHECK_FALSE(put_string_if_absent(storage, "empty", "not empty"));
  CHECK(get_string(storage, "empty") == "");
}

TEST_CASE_TEMPLATE("getting a missing key returns false and delivers nothing", B,
                   WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  CHECK(get_string(storage, "missing") == std::nullopt);  // nothing was ever written: no root yet
  put_string(storage, "dir/object", "x");
  CHECK(get_string(storage, "missing") == std::nullopt);
  CHECK(get_string(storage, "a/b/c/missing") == std::nullopt);
  CHECK(get_string(storage, "dir") == std::nullopt);               // a prefix of other keys is not an object
  CHECK(get_string(storage, "dir/object/below") == std::nullopt);  // below an object
  CHECK(get_string(storage, "missing", {5, 3}) == std::nullopt);
}

TEST_CASE_TEMPLATE("range gets deliver exactly the requested bytes, clipped to the object", B,
                   WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  put_string(storage, "digits", "0123456789");
  CHECK(get_string(storage, "digits", {0, std::nullopt}) == "0123456789");
  CHECK(get_string(storage, "digits", {3, std::nullopt}) == "3456789");
  CHECK(get_string(storage, "digits", {3, 4}) == "3456");
  CHECK(get_string(storage, "digits", {0, 1}) == "0");
  CHECK(get_string(storage, "digits", {9, 1}) == "9");
  CHECK(get_string(storage, "digits", {8, 100}) == "89");          // length past the end
  CHECK(get_string(storage, "digits", {10, std::nullopt}) == "");  // offset at the end
  CHECK(get_string(storage, "digits", {10, 5}) == "");
  CHECK(get_string(storage, "digits", {15, std::nullopt}) == "");  // offset past the end
  CHECK(get_string(storage, "digits", {4, 0}) == "");
  CHECK(get_string(storage, "digits", {0, UINT64_MAX}) == "0123456789");
}

TEST_CASE_TEMPLATE("put replaces an existing object", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  put_string(storage, "k", "a longer first version");
  put_string(storage, "k", "v2");
  CHECK(get_string(storage, "k") == "v2");
  CHECK(storage.list("") == std::vector<ObjectInfo>{{"k", 2}});
}

TEST_CASE_TEMPLATE("put_if_absent never overwrites an existing object", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  CHECK(put_string_if_absent(storage, "leases/db", "first"));
  CHECK_FALSE(put_string_if_absent(storage, "leases/db", "second, longer"));
  CHECK(get_string(storage, "leases/db") == "first");

  put_string(storage, "plain", "by put");
  CHECK_FALSE(put_string_if_absent(storage, "plain", "by put_if_absent"));
  CHECK(get_string(storage, "plain") == "by put");

  storage.remove({"leases/db"});
  CHECK(put_string_if_absent(storage, "leases/db", "third"));
  CHECK(get_string(storage, "leases/db") == "third");
}

TEST_CASE_TEMPLATE("put_if_absent has exactly one winner among racing threads", B,
                   WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  // A backend that says its put_if_absent is a check-then-put promises no
  // single winner (an S3 store that ignores If-None-Match).
  if (!storage.atomic_put_if_absent()) return;
  constexpr int k_threads = 6;
  for (int round = 0; round < 5; ++round) {
    const std::string key = "race/round-" + std::to_string(round);
    std::atomic<int> ready{0};
    std::vector<int> won(k_threads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < k_threads; ++t) {
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < k_threads) std::this_thread::yield();
        won[static_cast<size_t>(t)] =
            put_string_if_absent(storage, key, "writer-" + std::to_string(t)) ? 1 : 0;
      });
    }
    for (std::thread& th : threads) th.join();
    CAPTURE(round);
    REQUIRE(std::count(won.begin(), won.end(), 1) == 1);
    const auto winner = std::find(won.begin(), won.end(), 1) - won.begin();
    CHECK(get_string(storage, key) == "writer-" + std::to_string(winner));
  }
}

TEST_CASE_TEMPLATE("list returns keys sorted with sizes, filtered by prefix", B,
                   WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  CHECK(storage.list("").empty());
  CHECK(storage.list("snapshots/").empty());

  // Written out of order: the listing, not the writes, must sort.
  put_string(storage, "wal/0000000000000001/0000000000000002.wal", "wal-2");
  put_string(storage, "snapshots/0100000000000000.snap", "s-big");
  put_string(storage, "snapshots/0000000000000002.snap", "s-2.");
  put_string(storage, "snapshotsx/other", "o");
  put_string(storage, "snapshots/0000000000000001.snap", "s1");
  put_string(storage, "lease", "");
  put_string(storage, "wal/0000000000000001/0000000000000001.wal", "wal-1!");

  CHECK(storage.list("") == std::vector<ObjectInfo>{
                                {"lease", 0},
                                {"snapshots/0000000000000001.snap", 2},
                                {"snapshots/0000000000000002.snap", 4},
                                {"snapshots/0100000000000000.snap", 5},
                                {"snapshotsx/other", 1},
                                {"wal/0000000000000001/0000000000000001.wal", 6},
                                {"wal/0000000000000001/0000000000000002.wal", 5},
                            });
  CHECK(keys_of(storage.list("snapshots/")) == std::vector<std::string>{"snapshots/0000000000000001.snap",
                                                                        "snapshots/0000000000000002.snap",
                                                                        "snapshots/0100000000000000.snap"});
  // A prefix that ends inside a segment matches by string, not by directory.
  CHECK(keys_of(storage.list("snapshots/00")) ==
        std::vector<std::string>{"snapshots/0000000000000001.snap", "snapshots/0000000000000002.snap"});
  CHECK(keys_of(storage.list("snapshots")) ==
        std::vector<std::string>{"snapshots/0000000000000001.snap", "snapshots/0000000000000002.snap",
                                 "snapshots/0100000000000000.snap", "snapshotsx/other"});
  CHECK(keys_of(storage.list("wal/0000000000000001/")) ==
        std::vector<std::string>{"wal/0000000000000001/0000000000000001.wal",
                                 "wal/0000000000000001/0000000000000002.wal"});
  CHECK(keys_of(storage.list("wal/0")) == keys_of(storage.list("wal/0000000000000001/")));
  CHECK(keys_of(storage.list("le")) == std::vector<std::string>{"lease"});
  CHECK(keys_of(storage.list("snapshots/0000000000000001.snap")) ==
        std::vector<std::string>{"snapshots/0000000000000001.snap"});
  CHECK(storage.list("nothing/").empty());
  CHECK(storage.list("snapshots/1").empty());
  CHECK(storage.list("lease/").empty());  // below an object
}

TEST_CASE_TEMPLATE("nested keys are independent objects", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  put_string(storage, "a/b/c/d", "abcd");
  put_string(storage, "a/b/e", "abe");
  put_string(storage, "a/f", "af");
  put_string(storage, "g", "g");
  CHECK(get_string(storage, "a/b/c/d") == "abcd");
  CHECK(get_string(storage, "a/b/e") == "abe");
  CHECK(get_string(storage, "a/f") == "af");
  CHECK(keys_of(storage.list("a/")) == std::vector<std::string>{"a/b/c/d", "a/b/e", "a/f"});
  CHECK(keys_of(storage.list("a/b/")) == std::vector<std::string>{"a/b/c/d", "a/b/e"});
  CHECK(keys_of(storage.list("a/b/c/")) == std::vector<std::string>{"a/b/c/d"});
}

TEST_CASE_TEMPLATE("remove deletes existing keys and ignores missing ones", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  storage.remove({"never/existed"});  // nothing written yet
  put_string(storage, "a/1", "1");
  put_string(storage, "a/2", "2");
  put_string(storage, "b/deep/3", "3");
  storage.remove({"a/1", "missing", "b/deep/3", "x/y/z", "a/1"});
  CHECK(keys_of(storage.list("")) == std::vector<std::string>{"a/2"});
  CHECK(get_string(storage, "a/1") == std::nullopt);
  CHECK(get_string(storage, "b/deep/3") == std::nullopt);
  storage.remove({});
  storage.remove({"a/2"});
  CHECK(storage.list("").empty());
  // Removing must not break later writes below the same prefixes.
  put_string(storage, "b/deep/3", "again");
  CHECK(get_string(storage, "b/deep/3") == "again");
}

TEST_CASE_TEMPLATE("a large object streams in pieces and reads back intact", B,
                   WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  const std::vector<std::byte> data = pattern_bytes((5u << 20) + 17);
  MemorySource source(data);
  storage.put("snapshots/big.snap", source);
  CHECK(storage.list("snapshots/") == std::vector<ObjectInfo>{{"snapshots/big.snap", data.size()}});

  RecordingSink sink;
  REQUIRE(storage.get("snapshots/big.snap", sink));
  CHECK(sink.m_data == data);
  CHECK(sink.m_writes > 1);                    // streamed, ...
  CHECK(sink.m_largest <= (size_t{4} << 20));  // ... never the whole object in one buffer

  // A range that crosses chunk boundaries.
  RecordingSink part;
  const uint64_t offset = (1u << 20) - 3;
  const uint64_t length = (2u << 20) + 5;
  REQUIRE(storage.get("snapshots/big.snap", part, {offset, length}));
  CHECK(part.m_data == std::vector<std::byte>(data.begin() + static_cast<std::ptrdiff_t>(offset),
                                              data.begin() + static_cast<std::ptrdiff_t>(offset + length)));
}

TEST_CASE_TEMPLATE("a put whose source fails leaves no object behind", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  FailingSource source(pattern_bytes(300000), 150000);
  CHECK_THROWS_WITH_AS(storage.put("snapshots/1.snap", source), doctest::Contains("Input/output error"),
                       Failure);
  source.rewind();
  CHECK_THROWS_AS(storage.put_if_absent("snapshots/1.snap", source), Failure);
  CHECK(get_string(storage, "snapshots/1.snap") == std::nullopt);
  CHECK(storage.list("").empty());
  // The failed attempts must not block a later put_if_absent.
  CHECK(put_string_if_absent(storage, "snapshots/1.snap", "whole"));
}

TEST_CASE_TEMPLATE("a source shorter than its declared size is refused", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  ShortSource source;
  CHECK_THROWS_WITH_AS(storage.put("k", source), doctest::Contains("expected 10"), Failure);
  source.rewind();
  CHECK_THROWS_AS(storage.put_if_absent("k", source), Failure);
  CHECK(storage.list("").empty());
}

TEST_CASE_TEMPLATE("keys that could leave the replica prefix are refused", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  Storage& storage = *backend.storage;
  for (const char* bad : {"", "/abs", "../x", "a/../b", "a/..", "..", "a//b", "a/", "./a", "a/./b", "."}) {
    CAPTURE(bad);
    const std::string key = bad;
    StringSource source("x");
    CHECK_THROWS_WITH_AS(storage.put(key, source), doctest::Contains("invalid object key"), Failure);
    CHECK_THROWS_AS(storage.put_if_absent(key, source), Failure);
    MemorySink sink;
    CHECK_THROWS_AS(storage.get(key, sink), Failure);
    CHECK_THROWS_AS(storage.remove({key}), Failure);
  }
  CHECK(storage.list("").empty());
}

TEST_CASE_TEMPLATE("the url names the backend and is safe to log", B, WALSHIP_CONFORMANCE_BACKENDS) {
  B backend;
  const std::string url = backend.storage->url();
  CHECK(url.find("://") != std::string::npos);
  CHECK(redact_url(url) == url);
}
