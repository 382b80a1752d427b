#include "lib/util/byte_stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "lib/util/error.h"

namespace walship {

void ComparingSink::write(std::span<const std::byte> data) {
  m_seen += data.size();
  while (m_equal && !data.empty()) {
    const size_t n =
        m_expected.read(std::span<std::byte>(m_buffer.data(), std::min(data.size(), m_buffer.size())));
    if (n == 0 || std::memcmp(m_buffer.data(), data.data(), n) != 0) {
      m_equal = false;
      break;
    }
    data = data.subspan(n);
  }
}

size_t MemorySource::read(std::span<std::byte> out) {
  const size_t n = std::min(out.size(), m_data.size() - m_pos);
  if (n == 0) return 0;  // an empty source has no data pointer to copy from
  std::memcpy(out.data(), m_data.data() + m_pos, n);
  m_pos += n;
  return n;
}

FileSource::FileSource(const std::string& path) : m_path(path) {
  m_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (m_fd < 0) throw Failure(errno_message("unable to open '" + path + "'", errno));
  struct stat st {};
  if (::fstat(m_fd, &st) != 0) {
    const int err = errno;
    ::close(m_fd);
    throw Failure(errno_message("unable to stat '" + path + "'", err));
  }
  m_size = static_cast<uint64_t>(st.st_size);
}

FileSource::~FileSource() {
  if (m_fd >= 0) ::close(m_fd);
}

size_t FileSource::read(std::span<std::byte> out) {
  for (;;) {
    const ssize_t n = ::pread(m_fd, out.data(), out.size(), static_cast<off_t>(m_pos));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Failure(errno_message("unable to read '" + m_path + "'", errno));
    m_pos += static_cast<uint64_t>(n);
    return static_cast<size_t>(n);
  }
}

size_t FdSource::read(std::span<std::byte> out) {
  const uint64_t left = m_size - m_pos;
  if (out.size() > left) out = out.first(static_cast<size_t>(left));
  for (;;) {
    const ssize_t n = ::pread(m_fd, out.data(), out.size(), static_cast<off_t>(m_pos));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Failure(errno_message("unable to read '" + m_name + "'", errno));
    if (n == 0 && !out.empty())
      throw Failure("unable to read '" + m_name + "': file shrank while sending it");
    m_pos += static_cast<uint64_t>(n);
    return static_cast<size_t>(n);
  }
}

void FdSink::write(std::span<const std::byte> data) {
  while (!data.empty()) {
    const ssize_t n = ::write(m_fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Failure(errno_message("unable to write '" + m_path + "'", errno));
    data = data.subspan(static_cast<size_t>(n));
  }
}

void LimitSink::write(std::span<const std::byte> data) {
  if (m_limit) data = data.first(static_cast<size_t>(std::min<uint64_t>(data.size(), *m_limit - m_written)));
  if (data.empty()) return;
  m_out.write(data);
  m_written += data.size();
}

}  // namespace walship
