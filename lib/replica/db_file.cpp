#include "lib/replica/db_file.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "lib/sqlite/sqlite.h"
#include "lib/util/endian.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"

namespace walship {

DbFileInfo check_db_file(const std::string& path) {
  struct stat st {};
  // Permissions need a person: a usage error, not something to retry.
  const auto unreadable = [&](int err) {
    if (err == EACCES || err == EPERM) {
      throw UsageError("database '" + path + "' is not readable by this user (" + std::strerror(err) +
                       "): run as the app's user, or give this one access");
    }
    throw Failure(errno_message("unable to read database '" + path + "'", err));
  };
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) throw UsageError("database '" + path + "' does not exist: check the path");
    unreadable(errno);
  }
  if (S_ISDIR(st.st_mode)) throw UsageError("database '" + path + "' is a directory: give the database file");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) unreadable(errno);
  std::array<std::byte, 100> header{};
  const size_t n = pread_full(fd.get(), header, 0, path);
  if (n == 0) throw UsageError("database '" + path + "' is empty: nothing to snapshot");
  if (n < header.size() || !sqlite::has_sqlite_header(header)) {
    throw UsageError("'" + path + "' is not a SQLite database (no SQLite header): check the path");
  }
  DbFileInfo info;
  info.size = static_cast<uint64_t>(st.st_size);
  const uint16_t raw_page_size = get_be16(header.data() + 16);
  info.page_size = raw_page_size == 1 ? 65536u : raw_page_size;
  info.wal_mode = static_cast<uint8_t>(header[18]) == 2 && static_cast<uint8_t>(header[19]) == 2;
  return info;
}

}  // namespace walship
