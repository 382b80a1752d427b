// Retries transient storage failures with jittered exponential backoff. It is
// a wrapper, not a flag threaded through backends: every backend gets the same
// behaviour, and tests drive it with MemoryStorage faults and a fake clock.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lib/storage/storage.h"

namespace walship {

struct RetryPolicy {
  // Total tries per operation, the first one included.
  int max_attempts = 6;
  // The n-th retry waits between half and all of min(max_delay, base_delay * 2^(n-1)).
  std::chrono::milliseconds base_delay{100};
  std::chrono::milliseconds max_delay{10'000};
};

class RetryingStorage : public Storage {
 public:
  using SleepFn = std::function<void(std::chrono::milliseconds)>;
  // Returns a uniformly distributed number in [0, 1).
  using RandomFn = std::function<double()>;

  // Wraps `inner`. `sleep` defaults to std::this_thread::sleep_for and
  // `random` to a per-thread PRNG seeded from std::random_device; tests inject
  // both so no test really sleeps.
  explicit RetryingStorage(std::unique_ptr<Storage> inner, RetryPolicy policy = {}, SleepFn sleep = {},
                           RandomFn random = {});

  Storage& inner() { return *m_inner; }

  std::string url() const override { return m_inner->url(); }
  bool atomic_put_if_absent() const override { return m_inner->atomic_put_if_absent(); }
  std::string warning() const override { return m_inner->warning(); }
  std::string retrying_error() const override;
  StorageFacts facts() const override { return m_inner->facts(); }

  // Rewinds `data` before every attempt.
  void put(const std::string& key, ByteSource& data) override;

  // Rewinds `data` before every attempt. An attempt can succeed on the server
  // and still fail on the way back (a timeout after the write): if a retry
  // then finds the key taken, the object is read back and compared with
  // `data`, and identical bytes count as this writer's win.
  bool put_if_absent(const std::string& key, ByteSource& data) override;

  // After a failure in the middle of the object, the retry asks for the rest
  // only (a range starting at the bytes already delivered), so `out` sees
  // every byte exactly once. If the object disappears between attempts after
  // bytes were delivered, throws a non-transient StorageError.
  bool get(const std::string& key, ByteSink& out, const ByteRange& range = {}) override;

  std::vector<ObjectInfo> list(const std::string& prefix) override;

  // Safe to repeat: keys already removed by a failed attempt are ignored.
  void remove(const std::vector<std::string>& keys) override;

  // The delay before retry number `retry` (1 for the first retry), given a
  // random number in [0, 1). Pure; exposed for tests.
  static std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int retry, double random);

 private:
  // Runs `attempt` until it returns or throws something that is not a
  // transient StorageError. `op` and `key` name the operation in logs and in
  // the error thrown once the attempts are used up.
  template <typename Result>
  Result run(const char* op, const std::string& key, const std::function<Result()>& attempt);

  void set_retrying(std::string error);

  std::unique_ptr<Storage> m_inner;
  mutable std::mutex m_mutex;  // guards m_retrying (read from any thread)
  std::string m_retrying;      // see retrying_error()
  RetryPolicy m_policy;
  SleepFn m_sleep;
  RandomFn m_random;
};

}  // namespace walship
