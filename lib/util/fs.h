// Local file helpers: RAII descriptors, durable writes and temp files that a
// signal or an error never leaves behind at a final path.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace walship {

// The whole content of a small file (a token, a key, a credentials file);
// nullopt when it cannot be read, errno saying why. Callers say what the
// file is for in their own error.
std::optional<std::string> read_small_file(const std::string& path);

// How a credentials file that cannot be read is reported: as a usage error
// (a file read once, at start: the setup is wrong) or as a non-transient
// StorageError (a token file read again at each refresh, by a running process).
enum class CredentialsFileError { usage, storage };

// A credentials file (a key, a token, a credentials JSON) named `what` in
// errors ("unable to read WHAT 'PATH': <cause>", "WHAT 'PATH' is empty"):
// its content without the white space around it, which most writers add.
std::string read_credentials_file(const std::string& path, const std::string& what,
                                  CredentialsFileError error);

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : m_fd(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : m_fd(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return m_fd; }
  explicit operator bool() const { return m_fd >= 0; }
  int release();
  void reset(int fd = -1);

 private:
  int m_fd = -1;
};

std::string dir_name(const std::string& path);
std::string base_name(const std::string& path);
bool path_exists(const std::string& path);

// fsync with the path in the error message.
void fsync_fd(int fd, const std::string& path);
// fsync a directory so a rename or create inside it is durable.
void fsync_dir(const std::string& dir);
// pwrite/pread the whole span or throw a Failure naming the path.
void pwrite_all(int fd, std::span<const std::byte> data, uint64_t offset, const std::string& path);
// Writes the spans one after another from `offset`, as few system calls as
// pwritev allows (IOV_MAX spans each), or throws a Failure naming the path.
void pwritev_all(int fd, std::span<const std::span<const std::byte>> parts, uint64_t offset,
                 const std::string& path);
// Returns the bytes read: fewer than data.size() only at end of file.
size_t pread_full(int fd, std::span<std::byte> data, uint64_t offset, const std::string& path);

// A named temp file ".<base>.walship-tmp-XXXXXX" beside `final_path`. It is
// removed by the destructor, and by a stop signal of a command that asked
// for that (lib/util/signals.h), unless commit() renamed it into place.
class TempFile {
 public:
  explicit TempFile(const std::string& final_path);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const { return m_fd.get(); }
  const std::string& path() const { return m_path; }
  // Closes the descriptor (after the caller fsync'ed) but keeps the file.
  void close();
  // Renames the temp file onto `final_path` and fsyncs the directory.
  void commit();

 private:
  std::string m_final_path;
  std::string m_path;
  UniqueFd m_fd;
  bool m_committed = false;
  int m_cleanup_slot = -1;
};

// An anonymous file (O_TMPFILE, or created and unlinked at once) in `dir`:
// nothing is left on disk whatever happens to the process.
UniqueFd anonymous_file(const std::string& dir);

// Whether this process is out of file descriptors right now (opening one
// more fails with EMFILE or ENFILE): what a failure whose message names
// another cause ("unable to open database file") was really about.
bool descriptors_exhausted();

}  // namespace walship
