#include "backends/retrying_storage.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <string_view>
#include <thread>
#include <utility>

#include "lib/util/error.h"
#include "lib/util/log.h"

namespace walship {

namespace {

// Forwards to the caller's sink and counts what it accepted, so a retried
// download can resume exactly where the caller's data ends.
class CountingSink : public ByteSink {
 public:
  explicit CountingSink(ByteSink& out) : m_out(out) {}
  void write(std::span<const std::byte> data) override {
    m_out.write(data);
    m_count += data.size();  // only after the caller took the bytes
  }
  uint64_t count() const { return m_count; }

 private:
  ByteSink& m_out;
  uint64_t m_count = 0;
};

double default_random() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
}

const char* verb_for(std::string_view op) {
  if (op == "get") return "read";
  if (op == "list") return "list";
  if (op == "remove") return "remove";
  return "write";
}

}  // namespace

RetryingStorage::RetryingStorage(std::unique_ptr<Storage> inner, RetryPolicy policy, SleepFn sleep,
                                 RandomFn random)
    : m_inner(std::move(inner)), m_policy(policy), m_sleep(std::move(sleep)), m_random(std::move(random)) {
  if (!m_sleep) m_sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
  if (!m_random) m_random = default_random;
  m_policy.max_attempts = std::max(m_policy.max_attempts, 1);
}

std::chrono::milliseconds RetryingStorage::backoff_delay(const RetryPolicy& policy, int retry,
                                                         double random) {
  // Doubling in a loop, not with a shift, so a large retry count cannot overflow.
  const int64_t cap = std::max<int64_t>(policy.max_delay.count(), 0);
  int64_t ceiling = std::min(std::max<int64_t>(policy.base_delay.count(), 0), cap);
  for (int i = 1; i < retry && ceiling < cap; ++i) ceiling = std::min(ceiling * 2, cap);
  // "Equal jitter": at least half the ceiling, so a retry always backs off,
  // plus a random half, so clients failing together do not retry together.
  random = std::clamp(random, 0.0, 1.0);
  const auto delay = static_cast<int64_t>(static_cast<double>(ceiling) * (0.5 + 0.5 * random));
  return std::chrono::milliseconds(std::min(delay, ceiling));
}

std::string RetryingStorage::retrying_error() const {
  std::lock_guard lock(m_mutex);
  return m_retrying;
}

void RetryingStorage::set_retrying(std::string error) {
  std::lock_guard lock(m_mutex);
  m_retrying = std::move(error);
}

template <typename Result>
Result RetryingStorage::run(const char* op, const std::string& key, const std::function<Result()>& attempt) {
  for (int n = 1;; ++n) {
    try {
      Result result = attempt();
      if (n > 1) set_retrying({});
      return result;
    } catch (const StorageError& e) {
      if (!e.transient()) {
        set_retrying({});
        throw;
      }
      const std::string target = m_inner->url() + (key.empty() ? "" : "/" + key);
      if (n >= m_policy.max_attempts) {
        set_retrying({});
        throw StorageError("unable to " + std::string(verb_for(op)) + " '" + target + "' after " +
                               std::to_string(n) + " attempts: " + e.what(),
                           true);
      }
      const std::chrono::milliseconds delay = backoff_delay(m_policy, n, m_random());
      if (log_enabled(LogLevel::warn)) {
        log(LogLevel::warn, "retrying storage operation",
            {{"op", op},
             {"url", m_inner->url()},
             {"key", key},
             {"attempt", std::to_string(n) + "/" + std::to_string(m_policy.max_attempts)},
             {"delay_ms", delay.count()},
             {"error", e.what()}});
      }
      set_retrying("unable to " + std::string(verb_for(op)) + " '" + target + "' (attempt " +
                   std::to_string(n) + " of " + std::to_string(m_policy.max_attempts) +
                   " failed, retrying): " + e.what());
      m_sleep(delay);
    }
  }
}

void RetryingStorage::put(const std::string& key, ByteSource& data) {
  run<bool>("put", key, [&] {
    data.rewind();
    m_inner->put(key, data);
    return true;
  });
}

bool RetryingStorage::put_if_absent(const std::string& key, ByteSource& data) {
  int attempts = 0;
  return run<bool>("put_if_absent", key, [&] {
    ++attempts;
    data.rewind();
    if (m_inner->put_if_absent(key, data)) return true;
    if (attempts == 1) return false;  // nothing of ours can be there yet
    // An earlier attempt may have written the object and lost the reply.
    data.rewind();
    ComparingSink compare(data);
    return m_inner->get(key, compare) && compare.equal();
  });
}

bool RetryingStorage::get(const std::string& key, ByteSink& out, const ByteRange& range) {
  CountingSink counting(out);
  return run<bool>("get", key, [&] {
    const uint64_t done = counting.count();
    // The failure came after the last requested byte (at the end of the
    // response): everything has been delivered already.
    if (done > 0 && range.length && done == *range.length) return true;
    ByteRange rest{range.offset + done, std::nullopt};
    if (range.length) rest.length = *range.length - done;
    const bool found = m_inner->get(key, counting, rest);
    if (!found && done > 0) {
      throw StorageError("unable to read '" + m_inner->url() + "/" + key +
                             "': the object disappeared after " + std::to_string(done) + " bytes were read",
                         false);
    }
    return found;
  });
}

std::vector<ObjectInfo> RetryingStorage::list(const std::string& prefix) {
  return run<std::vector<ObjectInfo>>("list", prefix, [&] { return m_inner->list(prefix); });
}

void RetryingStorage::remove(const std::vector<std::string>& keys) {
  if (keys.empty()) return;
  const std::string shown =
      keys.size() == 1 ? keys[0] : keys[0] + " (and " + std::to_string(keys.size() - 1) + " more)";
  run<bool>("remove", shown, [&] {
    m_inner->remove(keys);
    return true;
  });
}

}  // namespace walship
