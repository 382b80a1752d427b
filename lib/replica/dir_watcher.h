// The file events `walship replicate` waits on (inotify): entries appearing,
// moving in, being deleted or closed after a write in the watched
// directories, and the next write to a watched WAL. Only says what happened;
// the loop decides what it means.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lib/util/fs.h"

namespace walship {

struct WatchEvent {
  enum class Kind {
    overflow,       // events were lost: anything may have changed
    file_written,   // `path` (watched with watch_next_write) was written
    entry_changed,  // `name` in directory `dir` was created, moved in, deleted or written
  };
  Kind kind = Kind::overflow;
  std::string path;
  std::string dir;
  std::string name;
};

class DirWatcher {
 public:
  // Throws Failure if inotify is not available.
  DirWatcher();

  // Readable while events wait to be read.
  int fd() const { return m_inotify.get(); }

  // Watches the entries of `dir` (again: nothing new). Throws UsageError if
  // it cannot (a missing directory, or the kernel's watch limit).
  void watch_dir(const std::string& dir);

  // Watches `path` for its next write, once (IN_ONESHOT): a busy writer then
  // raises one event per call instead of one per write() queued by the
  // kernel. A file that does not exist is not watched (its directory's watch
  // sees it appear).
  void watch_next_write(const std::string& path);

  // The events that arrived, without waiting.
  std::vector<WatchEvent> read();

 private:
  UniqueFd m_inotify;
  std::map<int, std::string> m_dirs;   // watch descriptor -> directory
  std::map<int, std::string> m_files;  // one-shot watch descriptor -> file
};

}  // namespace walship
