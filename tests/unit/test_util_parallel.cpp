#include <doctest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "lib/util/parallel.h"

using namespace walship;

TEST_CASE("parallel_for calls the body once for every index, whatever the parallelism") {
  for (const int parallelism : {0, 1, 3, 64}) {
    std::vector<std::atomic<int>> calls(50);
    parallel_for(calls.size(), parallelism, [&](size_t i) { ++calls[i]; });
    for (const std::atomic<int>& n : calls) CHECK(n == 1);
  }
  bool called = false;
  parallel_for(0, 4, [&](size_t) { called = true; });
  CHECK_FALSE(called);
}

TEST_CASE("parallel_for rethrows the first failure and starts nothing after it") {
  std::atomic<int> started{0};
  CHECK_THROWS_WITH_AS(parallel_for(1000, 1,
                                    [&](size_t i) {
                                      ++started;
                                      if (i == 3) throw std::runtime_error("item 3 is broken");
                                    }),
                       "item 3 is broken", std::runtime_error);
  CHECK(started == 4);  // one thread: items 0..3, then nothing
  started = 0;
  CHECK_THROWS_AS(parallel_for(1000, 4,
                               [&](size_t) {
                                 ++started;
                                 throw std::runtime_error("every item is broken");
                               }),
                  std::runtime_error);
  CHECK(started <= 4);  // each thread stops at its first failure
}
