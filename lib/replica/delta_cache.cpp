#include "lib/replica/delta_cache.h"

#include <array>
#include <cstddef>
#include <vector>

#include "lib/util/error.h"

namespace walship {

namespace {

constexpr size_t k_copy_chunk = size_t{64} << 10;

}  // namespace

bool DeltaCache::keep(const std::string& key, int level, int64_t bucket, int fd, uint64_t size) {
  std::shared_ptr<UniqueFd> out;
  uint64_t offset = 0;
  const std::pair<int, int64_t> id{level, bucket};
  {
    std::lock_guard lock(m_mutex);
    if (m_entries.count(key) || m_bytes + size > m_limit) return false;
    File& file = m_files[id];
    if (!file.fd) {
      try {
        file.fd = std::make_shared<UniqueFd>(anonymous_file(m_dir));
      } catch (const Error&) {
        m_files.erase(id);
        return false;
      }
    }
    out = file.fd;
    offset = file.end;
    // Reserved now: the step is the only writer, but a drop() may come between.
    file.end += size;
    ++file.entries;
    m_entries[key] = Entry{id, offset, size};
    m_bytes += size;
  }
  std::vector<std::byte> buffer(std::min<uint64_t>(size, k_copy_chunk));
  try {
    for (uint64_t done = 0; done < size;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(size - done, buffer.size()));
      if (pread_full(fd, std::span(buffer.data(), n), done, "delta spool") != n) throw Failure("short spool");
      pwrite_all(out->get(), std::span<const std::byte>(buffer.data(), n), offset + done, "compaction cache");
      done += n;
    }
  } catch (const Error&) {
    std::lock_guard lock(m_mutex);
    if (auto it = m_entries.find(key); it != m_entries.end()) drop_locked(it);
    return false;
  }
  return true;
}

bool DeltaCache::read(const std::string& key, ByteSink& out) const {
  std::shared_ptr<UniqueFd> in;
  Entry entry;
  {
    std::lock_guard lock(m_mutex);
    const auto it = m_entries.find(key);
    if (it == m_entries.end()) return false;
    entry = it->second;
    in = m_files.at(entry.file).fd;
  }
  std::vector<std::byte> buffer(std::min<uint64_t>(entry.size, k_copy_chunk));
  try {
    for (uint64_t done = 0; done < entry.size;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(entry.size - done, buffer.size()));
      if (pread_full(in->get(), std::span(buffer.data(), n), entry.offset + done, "compaction cache") != n)
        return false;
      out.write(std::span<const std::byte>(buffer.data(), n));
      done += n;
    }
  } catch (const Error&) {
    return false;
  }
  return true;
}

void DeltaCache::drop(const std::string& key) {
  std::lock_guard lock(m_mutex);
  if (auto it = m_entries.find(key); it != m_entries.end()) drop_locked(it);
}

void DeltaCache::retain(const std::set<std::string>& keys) {
  std::lock_guard lock(m_mutex);
  for (auto it = m_entries.begin(); it != m_entries.end();) {
    if (keys.count(it->first)) {
      ++it;
    } else {
      drop_locked(it++);
    }
  }
}

uint64_t DeltaCache::bytes() const {
  std::lock_guard lock(m_mutex);
  return m_bytes;
}

void DeltaCache::drop_locked(std::map<std::string, Entry>::iterator it) {
  m_bytes -= it->second.size;
  const auto file = m_files.find(it->second.file);
  if (--file->second.entries == 0) m_files.erase(file);
  m_entries.erase(it);
}

}  // namespace walship
