#include "lib/replica/counting_storage.h"

namespace walship {

namespace {

// Counts the bytes a download delivers, failed or not.
class CountingSink : public ByteSink {
 public:
  explicit CountingSink(ByteSink& inner) : m_inner(inner) {}
  void write(std::span<const std::byte> data) override {
    bytes += data.size();
    m_inner.write(data);
  }
  uint64_t bytes = 0;

 private:
  ByteSink& m_inner;
};

// Runs `f`, counting it as one request of `op` (an error if it throws).
template <typename F>
auto counted(StorageCounters& counters, StorageOp op, uint64_t uploaded, const uint64_t* downloaded, F&& f) {
  try {
    auto result = f();
    counters.count(op, false, uploaded, downloaded ? *downloaded : 0);
    return result;
  } catch (...) {
    counters.count(op, true, 0, downloaded ? *downloaded : 0);
    throw;
  }
}

}  // namespace

StorageCounts& StorageCounts::operator+=(const StorageCounts& other) {
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i] += other.requests[i];
    errors[i] += other.errors[i];
  }
  uploaded_bytes += other.uploaded_bytes;
  downloaded_bytes += other.downloaded_bytes;
  return *this;
}

void StorageCounters::count(StorageOp op, bool failed, uint64_t uploaded, uint64_t downloaded) {
  const auto i = static_cast<size_t>(op);
  m_requests[i].fetch_add(1, std::memory_order_relaxed);
  if (failed) m_errors[i].fetch_add(1, std::memory_order_relaxed);
  if (uploaded) m_uploaded.fetch_add(uploaded, std::memory_order_relaxed);
  if (downloaded) m_downloaded.fetch_add(downloaded, std::memory_order_relaxed);
}

StorageCounts StorageCounters::load() const {
  StorageCounts c;
  for (size_t i = 0; i < c.requests.size(); ++i) {
    c.requests[i] = m_requests[i].load(std::memory_order_relaxed);
    c.errors[i] = m_errors[i].load(std::memory_order_relaxed);
  }
  c.uploaded_bytes = m_uploaded.load(std::memory_order_relaxed);
  c.downloaded_bytes = m_downloaded.load(std::memory_order_relaxed);
  return c;
}

void CountingStorage::put(const std::string& key, ByteSource& data) {
  counted(m_counters, StorageOp::put, data.size(), nullptr, [&] {
    m_inner.put(key, data);
    return true;
  });
}

bool CountingStorage::put_if_absent(const std::string& key, ByteSource& data) {
  return counted(m_counters, StorageOp::put, data.size(), nullptr,
                 [&] { return m_inner.put_if_absent(key, data); });
}

bool CountingStorage::get(const std::string& key, ByteSink& out, const ByteRange& range) {
  CountingSink sink(out);
  return counted(m_counters, StorageOp::get, 0, &sink.bytes, [&] { return m_inner.get(key, sink, range); });
}

std::vector<ObjectInfo> CountingStorage::list(const std::string& prefix) {
  return counted(m_counters, StorageOp::list, 0, nullptr, [&] { return m_inner.list(prefix); });
}

void CountingStorage::remove(const std::vector<std::string>& keys) {
  counted(m_counters, StorageOp::remove, 0, nullptr, [&] {
    m_inner.remove(keys);
    return true;
  });
}

std::string storage_backend_of(const std::string& url) {
  const size_t colon = url.find(':');
  if (colon == std::string::npos || url.starts_with("/")) return "file";
  return url.substr(0, colon);
}

}  // namespace walship
