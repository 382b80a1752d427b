#include <doctest.h>

#include <chrono>
#include <thread>

#include "backends/memory/memory_storage.h"
#include "lib/replica/object_stream.h"

using namespace walship;

namespace {

std::vector<std::byte> pattern(size_t size) {
  std::vector<std::byte> data(size);
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<std::byte>((i * 31 + i / 7) & 0xff);
  return data;
}

std::vector<std::byte> read_all(ByteSource& source, size_t buffer_size) {
  std::vector<std::byte> out;
  std::vector<std::byte> buffer(buffer_size);
  for (size_t n; (n = source.read(buffer)) > 0;) out.insert(out.end(), buffer.begin(), buffer.begin() + n);
  return out;
}

}  // namespace

TEST_CASE("an object stream delivers the object's bytes in order whatever the parallelism") {
  MemoryStorage storage;
  const auto data = pattern(1'000'003);
  MemorySource source(data);
  storage.put("snapshots/x.snap", source);
  for (int parallelism : {1, 2, 8}) {
    for (uint64_t chunk : {uint64_t{4096}, uint64_t{100'000}, uint64_t{1} << 22}) {
      CAPTURE(parallelism);
      CAPTURE(chunk);
      ObjectStream stream(storage, "snapshots/x.snap", data.size(), parallelism, chunk);
      CHECK(read_all(stream, 7777) == data);
      CHECK(stream.bytes_fetched() == data.size());
    }
  }
}

TEST_CASE("an object stream fetches ranges, never more than its window ahead") {
  MemoryStorage storage;
  const auto data = pattern(64 * 1024);
  MemorySource source(data);
  storage.put("k", source);
  {
    ObjectStream stream(storage, "k", data.size(), 2, 1024);
    std::vector<std::byte> one(1);
    REQUIRE(stream.read(one) == 1);
    // Give the workers time to run ahead as far as they may.
    for (int i = 0; i < 100 && storage.count("get") < 3; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(storage.count("get") <= 4);  // the chunk being read + a window of parallelism + 1
  }
  for (const auto& call : storage.calls()) {
    if (call.op == "get") CHECK(call.range.length.value_or(0) == 1024);
  }
}

TEST_CASE("an object stream reports a missing or shortened object") {
  MemoryStorage storage;
  CHECK_THROWS_WITH_AS(read_all(*std::make_unique<ObjectStream>(storage, "gone", 10, 2), 10),
                       doctest::Contains("'gone' in 'memory://test' disappeared"), Failure);
  const auto data = pattern(100);
  MemorySource source(data);
  storage.put("short", source);
  ObjectStream stream(storage, "short", 200, 2, 64);
  CHECK_THROWS_WITH_AS(read_all(stream, 10), doctest::Contains("is shorter than listed"), Failure);
}

TEST_CASE("an object stream passes on storage failures and can be dropped half read") {
  MemoryStorage storage;
  const auto data = pattern(10'000);
  MemorySource source(data);
  storage.put("k", source);
  storage.set_fault_hook([](std::string_view op, const std::string&) {
    if (op == "get") throw StorageError("access denied", false);
  });
  ObjectStream failing(storage, "k", data.size(), 3, 1000);
  CHECK_THROWS_WITH_AS(read_all(failing, 100), "access denied", StorageError);
  storage.set_fault_hook({});
  ObjectStream half(storage, "k", data.size(), 3, 1000);
  std::vector<std::byte> some(1500);
  CHECK(half.read(some) > 0);
}  // destructors join the workers without hanging
