#include "lib/replica/dir_watcher.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/util/error.h"

namespace walship {

DirWatcher::DirWatcher() : m_inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
  if (!m_inotify) throw Failure(std::string("unable to watch files (inotify): ") + std::strerror(errno));
}

void DirWatcher::watch_dir(const std::string& dir) {
  for (const auto& [wd, watched] : m_dirs) {
    if (watched == dir) return;
  }
  const int wd =
      ::inotify_add_watch(m_inotify.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE);
  if (wd < 0) {
    throw UsageError("unable to watch directory '" + dir + "': " + std::strerror(errno) +
                     (errno == ENOSPC ? " (raise fs.inotify.max_user_watches)" : ""));
  }
  m_dirs[wd] = dir;
}

void DirWatcher::watch_next_write(const std::string& path) {
  const int wd = ::inotify_add_watch(m_inotify.get(), path.c_str(), IN_MODIFY | IN_ONESHOT);
  if (wd >= 0) m_files[wd] = path;
}

std::vector<WatchEvent> DirWatcher::read() {
  std::vector<WatchEvent> events;
  alignas(inotify_event) char buffer[65536];
  ssize_t n;
  while ((n = ::read(m_inotify.get(), buffer, sizeof buffer)) > 0) {
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buffer + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {
        events.push_back({WatchEvent::Kind::overflow, "", "", ""});
        continue;
      }
      if (const auto file = m_files.find(ev->wd); file != m_files.end()) {
        if (ev->mask & IN_MODIFY) events.push_back({WatchEvent::Kind::file_written, file->second, "", ""});
        if (ev->mask & IN_IGNORED) m_files.erase(file);  // the one-shot watch is spent
        continue;
      }
      const auto dir = m_dirs.find(ev->wd);
      if (dir == m_dirs.end() || ev->len == 0) continue;
      events.push_back({WatchEvent::Kind::entry_changed, "", dir->second, std::string(ev->name)});
    }
  }
  return events;
}

}  // namespace walship
