// RetryingStorage against MemoryStorage faults, with an injected clock and
// random source: no test here really sleeps.
#include <doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backends/memory/memory_storage.h"
#include "backends/retrying_storage.h"
#include "lib/util/log.h"
#include "tests/unit/support.h"

using namespace walship;
using std::chrono::milliseconds;

namespace {

using test::StringSource;

std::vector<std::byte> pattern_bytes(size_t size) {
  std::vector<std::byte> out(size);
  uint32_t x = 12345;
  for (auto& b : out) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>(x >> 24);
  }
  return out;
}

std::vector<std::byte> bytes_of(const std::string& s) {
  const auto span = as_bytes(s);
  return {span.begin(), span.end()};
}

// A RetryingStorage over a MemoryStorage, recording the sleeps it asks for.
struct Harness {
  explicit Harness(RetryPolicy policy = {}, std::vector<double> randoms = {0.5}) {
    set_log_level(LogLevel::error);  // keep retry warnings out of the test output
    auto inner = std::make_unique<MemoryStorage>("memory://bucket/app");
    memory = inner.get();
    storage = std::make_unique<RetryingStorage>(
        std::move(inner), policy, [this](milliseconds d) { sleeps.push_back(d); },
        [this, randoms] { return randoms[random_calls++ % randoms.size()]; });
  }

  ~Harness() { set_log_level(LogLevel::info); }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  MemoryStorage* memory = nullptr;
  std::unique_ptr<RetryingStorage> storage;
  std::vector<milliseconds> sleeps;
  size_t random_calls = 0;
};

void put_string(Storage& storage, const std::string& key, const std::string& value) {
  MemorySource source(as_bytes(value));
  storage.put(key, source);
}

// Fails the first `times` calls of `op` with a StorageError.
MemoryStorage::FaultHook fail_first(std::string op, int times, bool transient, int* seen = nullptr) {
  auto count = std::make_shared<int>(0);
  return [=](std::string_view called, const std::string& key) {
    if (called != op) return;
    ++*count;
    if (seen != nullptr) *seen = *count;
    if (*count <= times) {
      throw StorageError("unable to " + std::string(called) + " '" + key + "': 503 SlowDown", transient);
    }
  };
}

// A ByteSource that, on its first pass, fails half-way with a transient
// error: a connection reset while the request body is being sent.
class ResettingSource : public ByteSource {
 public:
  explicit ResettingSource(std::vector<std::byte> data) : m_data(std::move(data)) {}
  uint64_t size() const override { return m_data.size(); }
  size_t read(std::span<std::byte> out) override {
    if (m_rewinds < 2 && m_pos >= m_data.size() / 2) throw StorageError("connection reset by peer", true);
    const size_t n = std::min(out.size(), m_data.size() - m_pos);
    std::copy_n(m_data.begin() + static_cast<std::ptrdiff_t>(m_pos), n, out.begin());
    m_pos += n;
    return n;
  }
  void rewind() override {
    m_pos = 0;
    ++m_rewinds;
  }
  int rewinds() const { return m_rewinds; }

 private:
  std::vector<std::byte> m_data;
  size_t m_pos = 0;
  int m_rewinds = 0;
};

// Redirects stderr to a file while alive, to read the log lines.
class CapturedStderr {
 public:
  CapturedStderr() {
    m_path = (std::filesystem::temp_directory_path() / "walship-stderr-XXXXXX").string();
    const int fd = ::mkstemp(m_path.data());
    REQUIRE(fd >= 0);
    std::fflush(stderr);
    m_saved = ::dup(2);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~CapturedStderr() {
    restore();
    std::filesystem::remove(m_path);
  }
  CapturedStderr(const CapturedStderr&) = delete;
  CapturedStderr& operator=(const CapturedStderr&) = delete;
  std::string text() {
    restore();
    std::FILE* f = std::fopen(m_path.c_str(), "rb");
    std::string out;
    char buf[4096];
    size_t n;
    while (f != nullptr && (n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    if (f != nullptr) std::fclose(f);
    return out;
  }

 private:
  void restore() {
    if (m_saved < 0) return;
    std::fflush(stderr);
    ::dup2(m_saved, 2);
    ::close(m_saved);
    m_saved = -1;
  }
  std::string m_path;
  int m_saved = -1;
};

}  // namespace

TEST_CASE("a transient failure is retried and then succeeds") {
  Harness h;
  int attempts = 0;
  h.memory->set_fault_hook(fail_first("put", 2, true, &attempts));
  put_string(*h.storage, "snapshots/1.snap", "data");
  CHECK(attempts == 3);
  CHECK(h.sleeps.size() == 2);
  CHECK(h.memory->object("snapshots/1.snap") == bytes_of("data"));
}

TEST_CASE("a non-transient failure is not retried") {
  Harness h;
  int attempts = 0;
  h.memory->set_fault_hook(fail_first("put", 100, false, &attempts));
  StringSource source("data");
  try {
    h.storage->put("snapshots/1.snap", source);
    FAIL("put succeeded");
  } catch (const StorageError& e) {
    CHECK(std::string(e.what()) ==
          "unable to put 'snapshots/1.snap': 503 SlowDown");  // passed through unchanged
    CHECK_FALSE(e.transient());
  }
  CHECK(attempts == 1);
  CHECK(h.sleeps.empty());
}

TEST_CASE("when the attempts run out the error names the object and the cause") {
  RetryPolicy policy;
  policy.max_attempts = 4;
  Harness h(policy);
  int attempts = 0;
  h.memory->set_fault_hook(fail_first("put", 100, true, &attempts));
  StringSource source("data");
  try {
    h.storage->put("snapshots/1.snap", source);
    FAIL("put succeeded");
  } catch (const StorageError& e) {
    CHECK(std::string(e.what()) ==
          "unable to write 'memory://bucket/app/snapshots/1.snap' after 4 attempts: unable to put "
          "'snapshots/1.snap': 503 SlowDown");
    CHECK(e.transient());
  }
  CHECK(attempts == 4);
  CHECK(h.sleeps.size() == 3);
  CHECK_FALSE(h.memory->object("snapshots/1.snap").has_value());
}

TEST_CASE("a failed download resumes where it stopped without repeating bytes") {
  Harness h;
  const std::vector<std::byte> data = pattern_bytes(300000);
  MemorySource source(data);
  h.memory->put("snapshots/1.snap", source);
  h.memory->fail_get_after(100000, 2);

  MemorySink sink;
  REQUIRE(h.storage->get("snapshots/1.snap", sink));
  CHECK(sink.data() == data);
  std::vector<uint64_t> offsets;
  for (const MemoryStorage::Call& call : h.memory->calls()) {
    if (call.op != "get") continue;
    offsets.push_back(call.range.offset);
    CHECK_FALSE(call.range.length.has_value());
  }
  CHECK(offsets == std::vector<uint64_t>{0, 100000, 200000});
  CHECK(h.sleeps.size() == 2);
}

TEST_CASE("a failed ranged download resumes inside its range") {
  Harness h;
  const std::vector<std::byte> data = pattern_bytes(300000);
  MemorySource source(data);
  h.memory->put("snapshots/1.snap", source);
  h.memory->fail_get_after(70000, 2);

  MemorySink sink;
  REQUIRE(h.storage->get("snapshots/1.snap", sink, {1000, 250000}));
  CHECK(sink.data() == std::vector<std::byte>(data.begin() + 1000, data.begin() + 251000));
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const MemoryStorage::Call& call : h.memory->calls()) {
    if (call.op == "get") ranges.emplace_back(call.range.offset, call.range.length.value_or(0));
  }
  CHECK(ranges ==
        std::vector<std::pair<uint64_t, uint64_t>>{{1000, 250000}, {71000, 180000}, {141000, 110000}});
}

TEST_CASE("a download that fails after its last byte is complete and not repeated") {
  Harness h;
  const std::vector<std::byte> data = pattern_bytes(1000);
  MemorySource source(data);
  h.memory->put("k", source);

  h.memory->fail_get_after(500);
  MemorySink part;
  REQUIRE(h.storage->get("k", part, {0, 500}));
  CHECK(part.data() == std::vector<std::byte>(data.begin(), data.begin() + 500));
  CHECK(h.memory->count("get") == 1);  // nothing left to ask for

  h.memory->fail_get_after(1000);
  MemorySink whole;
  REQUIRE(h.storage->get("k", whole));
  CHECK(whole.data() == data);
}

TEST_CASE("a download that keeps failing gives up without delivering duplicates") {
  RetryPolicy policy;
  policy.max_attempts = 3;
  Harness h(policy);
  const std::vector<std::byte> data = pattern_bytes(1000);
  MemorySource source(data);
  h.memory->put("k", source);
  h.memory->fail_get_after(100, 10);
  MemorySink sink;
  CHECK_THROWS_WITH_AS(h.storage->get("k", sink),
                       doctest::Contains("unable to read 'memory://bucket/app/k' after 3 attempts"),
                       StorageError);
  CHECK(sink.data() == std::vector<std::byte>(data.begin(), data.begin() + 300));
}

TEST_CASE("an object that disappears during a resumed download is an error, not a short read") {
  Harness h;
  StringSource source(std::string(1000, 'x'));
  h.memory->put("k", source);
  h.memory->fail_get_after(10);
  int gets = 0;
  MemoryStorage* memory = h.memory;
  h.memory->set_fault_hook([&gets, memory](std::string_view op, const std::string& key) {
    if (op == "get" && ++gets == 2) memory->remove({key});
  });
  MemorySink sink;
  try {
    h.storage->get("k", sink);
    FAIL("get succeeded");
  } catch (const StorageError& e) {
    CHECK(std::string(e.what()) ==
          "unable to read 'memory://bucket/app/k': the object disappeared after 10 bytes were read");
    CHECK_FALSE(e.transient());
  }
  CHECK(sink.data().size() == 10);
}

TEST_CASE("a missing object is not an error and is not retried") {
  Harness h;
  MemorySink sink;
  CHECK_FALSE(h.storage->get("missing", sink));
  CHECK(h.memory->count("get") == 1);
  CHECK(h.sleeps.empty());
}

TEST_CASE("a sink failure is not retried") {
  struct BrokenSink : ByteSink {
    void write(std::span<const std::byte>) override {
      throw Failure("unable to write '/restore/db': No space left on device");
    }
  };
  Harness h;
  put_string(*h.storage, "k", "data");
  BrokenSink sink;
  CHECK_THROWS_WITH_AS(h.storage->get("k", sink), "unable to write '/restore/db': No space left on device",
                       Failure);
  CHECK(h.memory->count("get") == 1);
  CHECK(h.sleeps.empty());
}

TEST_CASE("puts rewind the source before each attempt") {
  Harness h;
  const std::vector<std::byte> data = pattern_bytes(200000);
  ResettingSource source(data);
  h.storage->put("snapshots/1.snap", source);
  CHECK(h.memory->object("snapshots/1.snap") == data);
  CHECK(source.rewinds() >= 2);
  CHECK(h.sleeps.size() == 1);
}

TEST_CASE("put_if_absent whose write landed but whose reply was lost still reports the win") {
  Harness h;
  MemoryStorage* memory = h.memory;
  bool landed = false;
  h.memory->set_fault_hook([&landed, memory](std::string_view op, const std::string& key) {
    if (op != "put_if_absent" || landed) return;
    landed = true;
    StringSource mine("holder-1");
    memory->put(key, mine);  // the write reaches the server...
    throw StorageError("unable to write '" + key + "': timed out waiting for the reply",
                       true);  // ...the reply does not
  });
  StringSource source("holder-1");
  CHECK(h.storage->put_if_absent("lease", source));
  CHECK(h.memory->object("lease") == bytes_of("holder-1"));
}

TEST_CASE("put_if_absent that loses to another writer during a retry reports the loss") {
  Harness h;
  MemoryStorage* memory = h.memory;
  bool raced = false;
  h.memory->set_fault_hook([&raced, memory](std::string_view op, const std::string& key) {
    if (op != "put_if_absent" || raced) return;
    raced = true;
    StringSource theirs("holder-2");
    memory->put(key, theirs);
    throw StorageError("unable to write '" + key + "': connection reset", true);
  });
  StringSource source("holder-1");
  CHECK_FALSE(h.storage->put_if_absent("lease", source));
  CHECK(h.memory->object("lease") == bytes_of("holder-2"));

  // Without any retry a taken key is simply a loss: no read-back.
  StringSource again("holder-2");
  const size_t gets_before = h.memory->count("get");
  CHECK_FALSE(h.storage->put_if_absent("lease", again));
  CHECK(h.memory->count("get") == gets_before);
}

TEST_CASE("list and remove are retried too") {
  Harness h;
  put_string(*h.storage, "a/1", "1");
  put_string(*h.storage, "a/2", "22");
  h.memory->set_fault_hook(fail_first("list", 1, true));
  CHECK(h.storage->list("a/") == std::vector<ObjectInfo>{{"a/1", 1}, {"a/2", 2}});
  h.memory->set_fault_hook(fail_first("remove", 1, true));
  h.storage->remove({"a/1", "a/2", "a/missing"});
  CHECK(h.memory->list("").empty());
  CHECK(h.sleeps.size() == 2);
}

TEST_CASE("backoff delays grow exponentially, are jittered and are capped") {
  const RetryPolicy policy;  // 100 ms base, 10 s cap
  CHECK(RetryingStorage::backoff_delay(policy, 1, 0.0) == milliseconds(50));
  CHECK(RetryingStorage::backoff_delay(policy, 1, 0.999999) == milliseconds(99));
  CHECK(RetryingStorage::backoff_delay(policy, 2, 0.0) == milliseconds(100));
  CHECK(RetryingStorage::backoff_delay(policy, 3, 0.5) == milliseconds(300));
  CHECK(RetryingStorage::backoff_delay(policy, 7, 0.0) == milliseconds(3200));
  CHECK(RetryingStorage::backoff_delay(policy, 8, 0.0) == milliseconds(5000));  // 12.8 s capped at 10 s
  CHECK(RetryingStorage::backoff_delay(policy, 8, 0.999999) == milliseconds(9999));
  CHECK(RetryingStorage::backoff_delay(policy, 1000, 1.0) == milliseconds(10000));
  for (int retry = 1; retry < 200; ++retry) {
    for (double r : {0.0, 0.3, 0.7, 0.999}) {
      CAPTURE(retry);
      const milliseconds d = RetryingStorage::backoff_delay(policy, retry, r);
      CHECK(d > milliseconds(0));
      CHECK(d <= milliseconds(10000));
    }
  }
}

TEST_CASE("the sleeps between attempts follow the policy and the injected randomness") {
  RetryPolicy policy;
  policy.max_attempts = 10;
  policy.base_delay = milliseconds(100);
  policy.max_delay = milliseconds(1000);
  Harness h(policy, {0.0, 1.0, 0.5});
  h.memory->set_fault_hook(fail_first("list", 9, true));
  CHECK(h.storage->list("").empty());
  CHECK(h.sleeps == std::vector<milliseconds>{milliseconds(50), milliseconds(200), milliseconds(300),
                                              milliseconds(400), milliseconds(1000), milliseconds(750),
                                              milliseconds(500), milliseconds(1000), milliseconds(750)});
}

TEST_CASE("each retry logs one warning with the key and the cause") {
  Harness h;
  set_log_level(LogLevel::info);
  set_log_timestamps(false);  // the lines without their time, to compare whole
  h.memory->set_fault_hook(fail_first("put", 2, true));
  std::string text;
  {
    CapturedStderr captured;
    put_string(*h.storage, "snapshots/0000000000000001.snap", "data");
    text = captured.text();
  }
  set_log_timestamps(true);
  CHECK(text ==
        "level=warn msg=\"retrying storage operation\" op=put url=memory://bucket/app "
        "key=snapshots/0000000000000001.snap attempt=1/6 delay_ms=75 "
        "error=\"unable to put 'snapshots/0000000000000001.snap': 503 SlowDown\"\n"
        "level=warn msg=\"retrying storage operation\" op=put url=memory://bucket/app "
        "key=snapshots/0000000000000001.snap attempt=2/6 delay_ms=150 "
        "error=\"unable to put 'snapshots/0000000000000001.snap': 503 SlowDown\"\n");
}
