#include "lib/util/fs.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string_view>
#include <vector>

#include "lib/util/error.h"
#include "lib/util/signals.h"

namespace walship {

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return text.str();
}

std::string read_credentials_file(const std::string& path, const std::string& what,
                                  CredentialsFileError error) {
  auto fail = [&](const std::string& message) -> std::string {
    if (error == CredentialsFileError::usage) throw UsageError(message);
    throw StorageError(message, false);
  };
  std::optional<std::string> content = read_small_file(path);
  if (!content) return fail(errno_message("unable to read " + what + " '" + path + "'", errno));
  constexpr std::string_view k_space = " \t\r\n";
  const size_t first = content->find_first_not_of(k_space);
  if (first == std::string::npos) return fail(what + " '" + path + "' is empty");
  return content->substr(first, content->find_last_not_of(k_space) - first + 1);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int UniqueFd::release() {
  const int fd = m_fd;
  m_fd = -1;
  return fd;
}

void UniqueFd::reset(int fd) {
  if (m_fd >= 0) ::close(m_fd);
  m_fd = fd;
}

std::string dir_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

void fsync_fd(int fd, const std::string& path) {
  if (::fsync(fd) != 0) throw Failure(errno_message("unable to sync file '" + path + "' after write", errno));
}

void fsync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw Failure(errno_message("unable to open directory '" + dir + "'", errno));
  if (::fsync(fd.get()) != 0) throw Failure(errno_message("unable to sync directory '" + dir + "'", errno));
}

void pwrite_all(int fd, std::span<const std::byte> data, uint64_t offset, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Failure(errno_message("unable to write '" + path + "'", errno));
    data = data.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
}

void pwritev_all(int fd, std::span<const std::span<const std::byte>> parts, uint64_t offset,
                 const std::string& path) {
  std::vector<iovec> iov;
  size_t next = 0;  // the first part not yet in `iov`
  size_t skip = 0;  // bytes of iov[0] already written
  while (next < parts.size() || !iov.empty()) {
    while (iov.size() < IOV_MAX && next < parts.size()) {
      const std::span<const std::byte> p = parts[next++];
      if (!p.empty()) iov.push_back({const_cast<std::byte*>(p.data()), p.size()});
    }
    if (iov.empty()) break;
    iov[0].iov_base = static_cast<std::byte*>(iov[0].iov_base) + skip;
    iov[0].iov_len -= skip;
    skip = 0;
    const ssize_t n = ::pwritev(fd, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Failure(errno_message("unable to write '" + path + "'", errno));
    if (n == 0) throw Failure("unable to write '" + path + "': the system wrote nothing");
    offset += static_cast<uint64_t>(n);
    // Drop what was written whole; a part written in part stays first.
    size_t left = static_cast<size_t>(n), done = 0;
    while (done < iov.size() && left >= iov[done].iov_len) left -= iov[done++].iov_len;
    iov.erase(iov.begin(), iov.begin() + static_cast<ptrdiff_t>(done));
    skip = left;
  }
}

size_t pread_full(int fd, std::span<std::byte> data, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Failure(errno_message("unable to read '" + path + "'", errno));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

namespace {

std::string random_suffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char k_chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s(8, 'x');
  for (char& c : s) c = k_chars[rng() % (sizeof k_chars - 1)];
  return s;
}

}  // namespace

TempFile::TempFile(const std::string& final_path) : m_final_path(final_path) {
  const std::string dir = dir_name(final_path);
  for (int attempt = 0; attempt < 100; ++attempt) {
    m_path = dir + "/." + base_name(final_path) + ".walship-tmp-" + random_suffix();
    // Register before creating so a signal in between cannot leak the file.
    m_cleanup_slot = register_temp_file(m_path);
    m_fd.reset(::open(m_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (m_fd) return;
    const int err = errno;
    unregister_temp_file(m_cleanup_slot);
    m_cleanup_slot = -1;
    if (err != EEXIST) throw Failure(errno_message("unable to create a temp file in '" + dir + "'", err));
  }
  throw Failure("unable to create a temp file in '" + dir + "': too many name collisions");
}

TempFile::~TempFile() {
  m_fd.reset();
  if (!m_committed) ::unlink(m_path.c_str());
  unregister_temp_file(m_cleanup_slot);
}

void TempFile::close() {
  const int fd = m_fd.release();
  if (fd >= 0 && ::close(fd) != 0) throw Failure(errno_message("unable to close '" + m_path + "'", errno));
}

void TempFile::commit() {
  close();
  // A stop signal on this thread waits until the rename and the cleanup slot
  // agree, so the handler sees either the temp file or the committed one,
  // never a mix (one handled on another thread meanwhile finds no temp file
  // to remove once the rename is done: signals.cpp).
  int renamed;
  int rename_errno;
  {
    const StopSignalsBlocked blocked;
    renamed = ::rename(m_path.c_str(), m_final_path.c_str());
    rename_errno = errno;
    if (renamed == 0) {
      m_committed = true;
      unregister_temp_file(m_cleanup_slot);
      m_cleanup_slot = -1;
    }
  }
  if (renamed != 0) {
    throw Failure(errno_message("unable to rename '" + m_path + "' to '" + m_final_path + "'", rename_errno));
  }
  fsync_dir(dir_name(m_final_path));
}

UniqueFd anonymous_file(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (fd) return fd;
  // Filesystems without O_TMPFILE: create and unlink at once.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string path = dir + "/.walship-anon-" + random_suffix();
    fd.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd) {
      ::unlink(path.c_str());
      return fd;
    }
    if (errno != EEXIST) break;
  }
  throw Failure(errno_message("unable to create a temp file in '" + dir + "'", errno));
}

bool descriptors_exhausted() {
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    return false;
  }
  return errno == EMFILE || errno == ENFILE;
}

}  // namespace walship
