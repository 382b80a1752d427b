#include "lib/replica/delta_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <random>
#include <vector>

#include "lib/util/error.h"
#include "lib/util/fs.h"

namespace walship {

namespace {

constexpr size_t k_copy_chunk = size_t{64} << 10;
constexpr std::string_view k_prefix = ".walship-cache-";

// This process's nonce: a pid that was another's before (pid 1 in every
// container start) does not make a dead process's files look like ours.
uint64_t process_nonce() {
  static const uint64_t nonce = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  return nonce;
}

std::string cache_file_name(const std::string& dir) {
  static std::atomic<uint64_t> serial{0};
  return dir + "/" + std::string(k_prefix) + std::to_string(::getpid()) + "-" +
         std::to_string(process_nonce()) + "-" + std::to_string(serial.fetch_add(1));
}

// A file of this cache's naming whose process is gone: another pid that no
// longer runs, or our pid with another nonce.
bool left_behind(const std::string& name) {
  if (!name.starts_with(k_prefix)) return false;
  const std::string rest = name.substr(k_prefix.size());
  const size_t dash = rest.find('-');
  const size_t dash2 = dash == std::string::npos ? dash : rest.find('-', dash + 1);
  if (dash2 == std::string::npos) return false;
  pid_t pid = 0;
  uint64_t nonce = 0;
  try {
    pid = static_cast<pid_t>(std::stoll(rest.substr(0, dash)));
    nonce = std::stoull(rest.substr(dash + 1, dash2 - dash - 1));
  } catch (const std::exception&) {
    return false;
  }
  if (pid == ::getpid()) return nonce != process_nonce();
  return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH;
}

// Copies `size` bytes from `in` at `from` to `out` at `to`.
void copy_range(int in, uint64_t from, int out, uint64_t to, uint64_t size, const std::string& what) {
  std::vector<std::byte> buffer(std::min<uint64_t>(size, k_copy_chunk));
  for (uint64_t done = 0; done < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size - done, buffer.size()));
    if (pread_full(in, std::span(buffer.data(), n), from + done, what) != n)
      throw Failure("short read of " + what);
    pwrite_all(out, std::span<const std::byte>(buffer.data(), n), to + done, what);
    done += n;
  }
}

}  // namespace

DeltaCache::DeltaCache(std::string dir, uint64_t limit_bytes) : m_dir(std::move(dir)), m_limit(limit_bytes) {
  DIR* d = ::opendir(m_dir.c_str());
  if (!d) return;
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (left_behind(name)) ::unlink((m_dir + "/" + name).c_str());
  }
  ::closedir(d);
}

DeltaCache::~DeltaCache() {
  for (const auto& [id, file] : m_files) ::unlink(file.path.c_str());
}

bool DeltaCache::keep(const std::string& key, int level, int64_t bucket, int fd, uint64_t size) {
  std::string path;
  bool created = false;
  uint64_t offset = 0;
  const std::pair<int, int64_t> id{level, bucket};
  {
    std::lock_guard lock(m_mutex);
    if (m_entries.count(key) || m_bytes + size > m_limit) return false;
    File& file = m_files[id];
    if (file.path.empty()) {
      file.path = cache_file_name(m_dir);
      created = true;
    }
    path = file.path;
    offset = file.end;
    // Reserved now: the step is the only writer, but a drop() may come between.
    file.end += size;
    ++file.entries;
    m_entries[key] = Entry{id, offset, size};
    m_bytes += size;
  }
  try {
    const int flags = O_WRONLY | O_CLOEXEC | (created ? O_CREAT | O_EXCL : 0);
    UniqueFd out(::open(path.c_str(), flags, 0600));
    if (!out) throw Failure(errno_message("unable to open '" + path + "'", errno));
    copy_range(fd, 0, out.get(), offset, size, "compaction cache");
  } catch (const Error&) {
    std::lock_guard lock(m_mutex);
    if (auto it = m_entries.find(key); it != m_entries.end()) drop_locked(it);
    return false;
  }
  return true;
}

bool DeltaCache::read(const std::string& key, ByteSink& out) const {
  std::string path;
  Entry entry;
  {
    std::lock_guard lock(m_mutex);
    const auto it = m_entries.find(key);
    if (it == m_entries.end()) return false;
    entry = it->second;
    path = m_files.at(entry.file).path;
  }
  UniqueFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return false;
  std::vector<std::byte> buffer(std::min<uint64_t>(entry.size, k_copy_chunk));
  try {
    for (uint64_t done = 0; done < entry.size;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(entry.size - done, buffer.size()));
      if (pread_full(in.get(), std::span(buffer.data(), n), entry.offset + done, path) != n) return false;
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
  if (--file->second.entries == 0) {
    ::unlink(file->second.path.c_str());
    m_files.erase(file);
  }
  m_entries.erase(it);
}

}  // namespace walship
