#include "backends/file/file_storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <memory>
#include <set>
#include <utility>

#include "backends/url.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/percent_encode.h"
#include "lib/util/temp_name.h"

namespace walship {

namespace {

// Creating a temp file can race with remove() deleting the (empty) directory
// it goes into, or (very rarely) collide with another temp name; both are
// retried this many times before giving up.
constexpr int k_create_attempts = 10;

// Local filesystems rarely fail in a way that waiting fixes. ENOSPC, EIO,
// EACCES, EROFS and the like need a person, so they are not transient; these
// are the few that do clear up (NFS server restarts, lock contention).
bool is_transient_errno(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT || err == ESTALE || err == EINTR;
}

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw StorageError(errno_message(what, err), is_transient_errno(err));
}

// Runs a system call again when a signal interrupted it.
template <typename Call>
auto retry_eintr(Call call) {
  for (;;) {
    auto result = call();
    if (result < 0 && errno == EINTR) continue;
    return result;
  }
}

std::string parent_dir(const std::string& path) { return dir_name(path); }

// fsync a directory so entries created, renamed or removed in it survive a
// power loss.
void sync_dir(const std::string& dir, const std::string& object_url) {
  UniqueFd fd(retry_eintr([&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
  if (!fd) throw_errno("unable to open directory '" + dir + "' to sync '" + object_url + "'", errno);
  if (retry_eintr([&] { return ::fsync(fd.get()); }) != 0) {
    // Some filesystems (certain FUSE and network ones) cannot fsync a
    // directory at all; their rename is as durable as it will get.
    if (errno == EINVAL || errno == ENOTSUP) return;
    throw_errno("unable to sync directory '" + dir + "' for '" + object_url + "'", errno);
  }
}

// mkdir -p, fsync'ing the parent of each directory it creates so the new
// entries are durable before an object is renamed into them.
void make_dirs(const std::string& dir, const std::string& object_url) {
  for (int pass = 0; pass < 2; ++pass) {
    if (::mkdir(dir.c_str(), 0777) == 0) {
      sync_dir(parent_dir(dir), object_url);
      return;
    }
    const int err = errno;
    // An existing non-directory is reported by the open or rename that follows.
    if (err == EEXIST) return;
    if (err == ENOENT && pass == 0 && dir != "/") {
      make_dirs(parent_dir(dir), object_url);
      continue;
    }
    throw_errno("unable to create directory '" + dir + "' for '" + object_url + "'", err);
  }
}

// A temp file path that is unlinked when it goes out of scope unless
// released: an error or an exception never leaves one behind.
class TempPath {
 public:
  TempPath() = default;
  explicit TempPath(std::string path) : m_path(std::move(path)) {}
  ~TempPath() { remove(); }
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;

  const std::string& path() const { return m_path; }
  void remove() {
    if (!m_path.empty()) ::unlink(m_path.c_str());
    m_path.clear();
  }
  void release() { m_path.clear(); }

 private:
  std::string m_path;
};

// Writes all of `data` to a new temp file beside `final_path`, fsyncs and
// closes it. The caller renames or links it into place.
std::unique_ptr<TempPath> write_temp(const std::string& final_path, ByteSource& data,
                                     const std::string& object_url) {
  const std::string dir = parent_dir(final_path);

  UniqueFd fd;
  std::unique_ptr<TempPath> temp;
  for (int attempt = 1;; ++attempt) {
    std::string path = temp_path_for(final_path);
    fd.reset(
        retry_eintr([&] { return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666); }));
    if (fd) {
      temp = std::make_unique<TempPath>(std::move(path));
      break;
    }
    const int err = errno;
    if (attempt < k_create_attempts && err == EEXIST) continue;
    if (attempt < k_create_attempts && err == ENOENT) {
      make_dirs(dir, object_url);
      continue;
    }
    throw_errno("unable to write '" + object_url + "'", err);
  }

  const uint64_t expected = data.size();
  std::vector<std::byte> buffer(static_cast<size_t>(std::min<uint64_t>(expected, FileStorage::k_chunk_size)) +
                                1);
  uint64_t total = 0;
  for (;;) {
    const size_t n = data.read(buffer);
    if (n == 0) break;
    total += n;
    if (total > expected) break;
    std::span<const std::byte> chunk(buffer.data(), n);
    while (!chunk.empty()) {
      const ssize_t written = retry_eintr([&] { return ::write(fd.get(), chunk.data(), chunk.size()); });
      if (written < 0) throw_errno("unable to write '" + object_url + "'", errno);
      chunk = chunk.subspan(static_cast<size_t>(written));
    }
  }
  if (total != expected) {
    // A source that lies about its size would make a torn object look whole.
    throw Failure("unable to write '" + object_url + "': the source gave " +
                  (total > expected ? "more than " : "") + std::to_string(total) + " bytes, expected " +
                  std::to_string(expected));
  }
  if (retry_eintr([&] { return ::fsync(fd.get()); }) != 0) {
    throw_errno("unable to sync '" + object_url + "' after write", errno);
  }
  // close() reports delayed write errors on NFS; it is not retried on EINTR
  // because Linux has already released the descriptor.
  if (::close(fd.release()) != 0 && errno != EINTR)
    throw_errno("unable to write '" + object_url + "'", errno);
  return temp;
}

// The process's umask, read once from /proc (umask() would have to set it to
// read it, racing other threads' creates); 022 when /proc does not say.
mode_t process_umask() {
  static const mode_t mask = [] {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.starts_with("Umask:"))
        return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8) & 0777);
    }
    return static_cast<mode_t>(022);
  }();
  return mask;
}

enum class Handover { linked, exists, not_possible };

// Links a source's whole file (ByteSource::handover_fd, an O_TMPFILE spool)
// in as `path` instead of copying it: fsynced first, with the mode a copy
// would get. not_possible when it cannot be linked here (another filesystem,
// not an O_TMPFILE, no /proc): the caller copies.
Handover link_whole_file(int fd, uint64_t size, const std::string& path, const std::string& object_url) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0 ||
      static_cast<uint64_t>(st.st_size) != size) {
    return Handover::not_possible;
  }
  if (::fchmod(fd, 0666 & ~process_umask()) != 0) return Handover::not_possible;
  if (retry_eintr([&] { return ::fsync(fd); }) != 0)
    throw_errno("unable to sync '" + object_url + "'", errno);
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  for (int attempt = 1;; ++attempt) {
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0)
      return Handover::linked;
    if (errno == EEXIST) return Handover::exists;
    // The first object under a prefix: its folder is made, as for a copy.
    if (errno != ENOENT || attempt > 1 || ::access("/proc/self/fd", F_OK) != 0) return Handover::not_possible;
    make_dirs(parent_dir(path), object_url);
  }
}

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

std::string normalize_root(const std::string& root) {
  std::string out;
  for (char c : root) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out += c;
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

FileStorage::FileStorage(const std::string& root) : m_root(normalize_root(root)) {
  if (!m_root.starts_with('/')) throw Failure("file storage root '" + m_root + "' is not an absolute path");
  m_url = "file://" + percent_encode(m_root, "/");
}

std::string FileStorage::url() const { return m_url; }

std::string FileStorage::join(const std::string& relative) const {
  if (relative.empty()) return m_root;
  return m_root == "/" ? "/" + relative : m_root + "/" + relative;
}

std::string FileStorage::object_url(const std::string& key) const {
  return m_url.ends_with('/') ? m_url + key : m_url + "/" + key;
}

std::string FileStorage::object_path(const std::string& key) const {
  check_object_key(key, m_url);
  // A key that looks like a temp file would be hidden from list() and could
  // be deleted as debris, so it cannot be an object.
  size_t start = 0;
  for (;;) {
    const size_t slash = key.find('/', start);
    if (is_temp_name(std::string_view(key).substr(start, slash - start))) {
      throw Failure("invalid object key '" + key + "' for '" + m_url + "': names containing '" +
                    std::string(k_temp_marker) + "' are reserved for temp files");
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return join(key);
}

void FileStorage::put(const std::string& key, ByteSource& data) {
  const std::string path = object_path(key);
  const std::string where = object_url(key);
  std::unique_ptr<TempPath> temp = write_temp(path, data, where);
  if (::rename(temp->path().c_str(), path.c_str()) != 0)
    throw_errno("unable to write '" + where + "'", errno);
  temp->release();
  sync_dir(parent_dir(path), where);
}

bool FileStorage::put_if_absent(const std::string& key, ByteSource& data) {
  const std::string path = object_path(key);
  const std::string where = object_url(key);
  // Cheap early answer; the link below is what makes the check atomic.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) return false;

  if (const int fd = data.handover_fd(); fd >= 0) {
    const Handover handover = link_whole_file(fd, data.size(), path, where);
    if (handover == Handover::exists) return false;
    if (handover == Handover::linked) {
      sync_dir(parent_dir(path), where);
      return true;
    }
  }
  std::unique_ptr<TempPath> temp = write_temp(path, data, where);
  if (::link(temp->path().c_str(), path.c_str()) != 0) {
    const int err = errno;
    if (err == EEXIST) return false;
    throw_errno("unable to write '" + where + "'", err);
  }
  // Unlink the temp name before the directory fsync so one fsync covers both.
  temp->remove();
  sync_dir(parent_dir(path), where);
  return true;
}

bool FileStorage::get(const std::string& key, ByteSink& out, const ByteRange& range) {
  const std::string path = object_path(key);
  const std::string where = object_url(key);
  UniqueFd fd(retry_eintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) return false;
    throw_errno("unable to read '" + where + "'", errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno("unable to read '" + where + "'", errno);
  if (S_ISDIR(st.st_mode)) return false;  // a directory of other keys, not an object
  if (!S_ISREG(st.st_mode)) throw StorageError("unable to read '" + where + "': not a regular file", false);

  const auto size = static_cast<uint64_t>(st.st_size);
  const uint64_t begin = std::min(range.offset, size);
  uint64_t end = size;
  if (range.length && *range.length < size - begin) end = begin + *range.length;
  if (begin == end) return true;

  std::vector<std::byte> buffer(static_cast<size_t>(std::min<uint64_t>(end - begin, k_chunk_size)));
  for (uint64_t pos = begin; pos < end;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(end - pos, buffer.size()));
    const ssize_t n =
        retry_eintr([&] { return ::pread(fd.get(), buffer.data(), want, static_cast<off_t>(pos)); });
    if (n < 0) throw_errno("unable to read '" + where + "'", errno);
    if (n == 0)
      throw StorageError("unable to read '" + where + "': the file shrank while it was read", false);
    out.write(std::span<const std::byte>(buffer.data(), static_cast<size_t>(n)));
    pos += static_cast<uint64_t>(n);
  }
  return true;
}

void FileStorage::walk(const std::string& dir, const std::string& key_prefix, const std::string& prefix,
                       std::vector<ObjectInfo>& out) const {
  UniqueDir handle(::opendir(dir.c_str()));
  if (!handle) {
    // A missing root is an empty replica; a subdirectory may be removed by a
    // concurrent prune between readdir and opendir.
    if (errno == ENOENT || errno == ENOTDIR) return;
    throw_errno("unable to list '" + object_url(prefix) + "': unable to open directory '" + dir + "'", errno);
  }
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(handle.get());
    if (entry == nullptr) {
      if (errno != 0)
        throw_errno("unable to list '" + object_url(prefix) + "': unable to read directory '" + dir + "'",
                    errno);
      break;
    }
    const std::string_view name = entry->d_name;
    if (name == "." || name == ".." || is_temp_name(name)) continue;

    struct stat st {};
    if (::fstatat(::dirfd(handle.get()), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed since readdir
      throw_errno("unable to list '" + object_url(prefix) + "': unable to stat '" + dir + "/" +
                      std::string(name) + "'",
                  errno);
    }
    const std::string key = key_prefix + std::string(name);
    if (S_ISDIR(st.st_mode)) {
      const std::string sub = key + "/";
      if (sub.starts_with(prefix) || prefix.starts_with(sub))
        walk(dir + "/" + std::string(name), sub, prefix, out);
    } else if (S_ISREG(st.st_mode) && key.starts_with(prefix)) {
      out.push_back({key, static_cast<uint64_t>(st.st_size)});
    }
  }
}

std::vector<ObjectInfo> FileStorage::list(const std::string& prefix) {
  // Start at the deepest directory the prefix names ("snapshots/" for
  // "snapshots/00"), so listing one generation does not walk the replica.
  const size_t slash = prefix.rfind('/');
  const std::string dir_key = slash == std::string::npos ? std::string() : prefix.substr(0, slash);
  if (slash != std::string::npos) check_object_key(dir_key, m_url);

  std::vector<ObjectInfo> out;
  walk(join(dir_key), dir_key.empty() ? std::string() : dir_key + "/", prefix, out);
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

void FileStorage::remove(const std::vector<std::string>& keys) {
  // Validate every key first, so a bad one is refused before anything is removed.
  std::vector<std::string> paths;
  paths.reserve(keys.size());
  for (const std::string& key : keys) paths.push_back(object_path(key));

  std::set<std::string> dirs_to_sync;
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    const std::string& path = paths[i];
    if (::unlink(path.c_str()) != 0) {
      const int err = errno;
      if (err == ENOENT || err == ENOTDIR || err == EISDIR) continue;  // not an object: nothing to remove
      throw_errno("unable to remove '" + object_url(key) + "'", err);
    }
    // Empty directories left by pruned generations would pile up forever.
    // rmdir fails harmlessly on a non-empty one, and a concurrent put that
    // loses its directory recreates it (write_temp).
    std::string dir = parent_dir(path);
    while (dir != m_root && dir.size() > m_root.size() && ::rmdir(dir.c_str()) == 0) dir = parent_dir(dir);
    dirs_to_sync.insert(dir);
  }
  for (const std::string& dir : dirs_to_sync) {
    UniqueFd fd(retry_eintr([&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
    if (!fd) continue;  // removed by another remover meanwhile
    if (retry_eintr([&] { return ::fsync(fd.get()); }) != 0 && errno != EINVAL && errno != ENOTSUP) {
      throw_errno("unable to sync directory '" + dir + "' after removing objects from '" + m_url + "'",
                  errno);
    }
  }
}

}  // namespace walship
