// Counts what a command asks of a replica's storage, for /metrics: requests
// and failures per operation and the bytes moved. A wrapper around any
// Storage (outside RetryingStorage: a request retried until it succeeds
// counts once, one that fails after its retries counts as an error). The
// counters are atomics: counting costs a few relaxed increments per request.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "lib/storage/storage.h"

namespace walship {

enum class StorageOp : uint8_t { get, put, list, remove };
inline constexpr std::array<const char*, 4> k_storage_op_names = {"get", "put", "list", "remove"};

// A copy of the counters at one moment.
struct StorageCounts {
  std::array<uint64_t, 4> requests{};  // by StorageOp
  std::array<uint64_t, 4> errors{};
  uint64_t uploaded_bytes = 0;
  uint64_t downloaded_bytes = 0;
  StorageCounts& operator+=(const StorageCounts& other);
};

class StorageCounters {
 public:
  void count(StorageOp op, bool failed, uint64_t uploaded, uint64_t downloaded);
  StorageCounts load() const;

 private:
  std::array<std::atomic<uint64_t>, 4> m_requests{};
  std::array<std::atomic<uint64_t>, 4> m_errors{};
  std::atomic<uint64_t> m_uploaded{0};
  std::atomic<uint64_t> m_downloaded{0};
};

class CountingStorage : public Storage {
 public:
  CountingStorage(Storage& inner, StorageCounters& counters) : m_inner(inner), m_counters(counters) {}
  CountingStorage(std::unique_ptr<Storage> inner, StorageCounters& counters)
      : m_owned(std::move(inner)), m_inner(*m_owned), m_counters(counters) {}

  std::string url() const override { return m_inner.url(); }
  void put(const std::string& key, ByteSource& data) override;
  bool put_if_absent(const std::string& key, ByteSource& data) override;
  bool atomic_put_if_absent() const override { return m_inner.atomic_put_if_absent(); }
  std::string warning() const override { return m_inner.warning(); }
  std::string retrying_error() const override { return m_inner.retrying_error(); }
  bool get(const std::string& key, ByteSink& out, const ByteRange& range = {}) override;
  std::vector<ObjectInfo> list(const std::string& prefix) override;
  void remove(const std::vector<std::string>& keys) override;

 private:
  std::unique_ptr<Storage> m_owned;
  Storage& m_inner;
  StorageCounters& m_counters;
};

// The URL's scheme as /metrics labels backends: "file", "s3", "gs", "sftp".
std::string storage_backend_of(const std::string& url);

}  // namespace walship
