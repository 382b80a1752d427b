// An in-memory Storage for tests: the reference the conformance suite holds
// every backend to, and a fake with fault hooks for RetryingStorage and engine
// tests (transient errors, connection resets in the middle of a download).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/storage/storage.h"

namespace walship {

class MemoryStorage : public Storage {
 public:
  // get() delivers objects in chunks of at most this size, like a real
  // download, so tests see streaming behaviour.
  static constexpr size_t k_chunk_size = size_t{64} << 10;

  // Called before every operation with its name ("put", "put_if_absent",
  // "get", "list" or "remove") and its key (the prefix for list, each key in
  // turn for remove). It may throw StorageError (transient or not) to
  // simulate a failure before the operation takes effect. It runs without the
  // storage's lock held, so it may call back into the storage.
  using FaultHook = std::function<void(std::string_view op, const std::string& key)>;

  // One operation as the storage saw it (after the fault hook let it through).
  struct Call {
    std::string op;
    std::string key;
    ByteRange range;  // for get
  };

  // `url` is what url() returns; it only appears in messages.
  explicit MemoryStorage(std::string url = "memory://test");

  std::string url() const override { return m_url; }
  void put(const std::string& key, ByteSource& data) override;
  bool put_if_absent(const std::string& key, ByteSource& data) override;
  bool get(const std::string& key, ByteSink& out, const ByteRange& range = {}) override;
  std::vector<ObjectInfo> list(const std::string& prefix) override;
  void remove(const std::vector<std::string>& keys) override;

  // Installs (or, with an empty function, removes) the fault hook.
  void set_fault_hook(FaultHook hook);

  // The next `times` get() calls that would deliver at least `bytes` bytes
  // deliver exactly `bytes` bytes and then throw a StorageError, as a
  // connection reset in the middle (or at the very end) of a download does.
  void fail_get_after(uint64_t bytes, int times = 1, bool transient = true);

  // Every operation that passed the fault hook, in order.
  std::vector<Call> calls() const;
  // How many operations named `op` passed the fault hook.
  size_t count(std::string_view op) const;

  // The object's bytes, or nullopt if there is none; bypasses hooks and calls().
  std::optional<std::vector<std::byte>> object(const std::string& key) const;

 private:
  using Bytes = std::shared_ptr<const std::vector<std::byte>>;

  // Runs the fault hook, then records the call.
  void enter(std::string_view op, const std::string& key, const ByteRange& range = {});
  Bytes read_all(const std::string& key, ByteSource& data) const;

  const std::string m_url;
  mutable std::mutex m_mutex;
  // Objects are immutable, so get() can stream one without holding the lock.
  std::map<std::string, Bytes> m_objects;
  FaultHook m_fault_hook;
  std::vector<Call> m_calls;
  uint64_t m_fail_get_after = 0;
  int m_fail_get_times = 0;
  bool m_fail_get_transient = true;
};

}  // namespace walship
