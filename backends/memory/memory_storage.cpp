#include "backends/memory/memory_storage.h"

#include <algorithm>
#include <utility>

#include "backends/url.h"
#include "lib/util/error.h"

namespace walship {

MemoryStorage::MemoryStorage(std::string url) : m_url(std::move(url)) {}

void MemoryStorage::set_fault_hook(FaultHook hook) {
  std::lock_guard<std::mutex> lock(m_mutex);
  m_fault_hook = std::move(hook);
}

void MemoryStorage::fail_get_after(uint64_t bytes, int times, bool transient) {
  std::lock_guard<std::mutex> lock(m_mutex);
  m_fail_get_after = bytes;
  m_fail_get_times = times;
  m_fail_get_transient = transient;
}

std::vector<MemoryStorage::Call> MemoryStorage::calls() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_calls;
}

size_t MemoryStorage::count(std::string_view op) const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return static_cast<size_t>(
      std::count_if(m_calls.begin(), m_calls.end(), [&](const Call& c) { return c.op == op; }));
}

std::optional<std::vector<std::byte>> MemoryStorage::object(const std::string& key) const {
  std::lock_guard<std::mutex> lock(m_mutex);
  const auto it = m_objects.find(key);
  if (it == m_objects.end()) return std::nullopt;
  return *it->second;
}

void MemoryStorage::enter(std::string_view op, const std::string& key, const ByteRange& range) {
  FaultHook hook;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    hook = m_fault_hook;
  }
  if (hook) hook(op, key);
  std::lock_guard<std::mutex> lock(m_mutex);
  m_calls.push_back({std::string(op), key, range});
}

MemoryStorage::Bytes MemoryStorage::read_all(const std::string& key, ByteSource& data) const {
  const uint64_t expected = data.size();
  auto bytes = std::make_shared<std::vector<std::byte>>();
  bytes->reserve(static_cast<size_t>(expected));
  std::vector<std::byte> buffer(k_chunk_size);
  for (;;) {
    const size_t n = data.read(buffer);
    if (n == 0) break;
    bytes->insert(bytes->end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    if (bytes->size() > expected) break;
  }
  if (bytes->size() != expected) {
    // Same rule as the real backends: a source that lies about its size must
    // not produce an object that looks whole.
    throw Failure("unable to write '" + m_url + "/" + key + "': the source gave " +
                  (bytes->size() > expected ? "more than " : "") + std::to_string(bytes->size()) +
                  " bytes, expected " + std::to_string(expected));
  }
  return bytes;
}

void MemoryStorage::put(const std::string& key, ByteSource& data) {
  check_object_key(key, m_url);
  enter("put", key);
  Bytes bytes = read_all(key, data);
  std::lock_guard<std::mutex> lock(m_mutex);
  m_objects[key] = std::move(bytes);
}

bool MemoryStorage::put_if_absent(const std::string& key, ByteSource& data) {
  check_object_key(key, m_url);
  enter("put_if_absent", key);
  Bytes bytes = read_all(key, data);
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_objects.emplace(key, std::move(bytes)).second;
}

bool MemoryStorage::get(const std::string& key, ByteSink& out, const ByteRange& range) {
  check_object_key(key, m_url);
  enter("get", key, range);
  Bytes bytes;
  uint64_t fail_after = 0;
  bool fail = false;
  bool fail_transient = true;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    const auto it = m_objects.find(key);
    if (it == m_objects.end()) return false;
    bytes = it->second;
    const uint64_t size = bytes->size();
    const uint64_t begin = std::min(range.offset, size);
    const uint64_t available = range.length ? std::min(*range.length, size - begin) : size - begin;
    if (m_fail_get_times > 0 && available >= m_fail_get_after) {
      --m_fail_get_times;
      fail = true;
      fail_after = m_fail_get_after;
      fail_transient = m_fail_get_transient;
    }
  }

  const uint64_t size = bytes->size();
  const uint64_t begin = std::min(range.offset, size);
  uint64_t end = size;
  if (range.length && *range.length < size - begin) end = begin + *range.length;
  if (fail) end = begin + fail_after;
  for (uint64_t pos = begin; pos < end;) {
    const uint64_t n = std::min<uint64_t>(end - pos, k_chunk_size);
    out.write(std::span<const std::byte>(bytes->data() + pos, static_cast<size_t>(n)));
    pos += n;
  }
  if (fail) {
    throw StorageError("unable to read '" + m_url + "/" + key + "': connection reset after " +
                           std::to_string(fail_after) + " bytes (injected)",
                       fail_transient);
  }
  return true;
}

std::vector<ObjectInfo> MemoryStorage::list(const std::string& prefix) {
  enter("list", prefix);
  std::vector<ObjectInfo> out;
  std::lock_guard<std::mutex> lock(m_mutex);
  for (auto it = m_objects.lower_bound(prefix); it != m_objects.end() && it->first.starts_with(prefix);
       ++it) {
    out.push_back({it->first, it->second->size()});
  }
  return out;
}

void MemoryStorage::remove(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) check_object_key(key, m_url);
  for (const std::string& key : keys) {
    enter("remove", key);
    std::lock_guard<std::mutex> lock(m_mutex);
    m_objects.erase(key);
  }
}

}  // namespace walship
