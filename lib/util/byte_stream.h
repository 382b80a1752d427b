// Streams between the engine and storage. Objects can be many GiB, so nothing
// in the interface requires a whole object in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace walship {

// A sized, rewindable source of bytes: storage needs the size up front
// (Content-Length, payload hashes) and must be able to re-send on retry.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Fills up to out.size() bytes; returns 0 only at the end.
  virtual size_t read(std::span<std::byte> out) = 0;
  virtual void rewind() = 0;
  // A descriptor of a file that holds exactly this source's bytes and that
  // nothing writes any more, which a store may take whole (the file backend
  // links it into the replica instead of copying it); -1 when there is none.
  virtual int handover_fd() const { return -1; }
};

// Where downloaded bytes go, in order.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(std::span<const std::byte> data) = 0;
};

// Compares downloaded bytes with a source, streaming both: equal() once the
// whole object was written, when it had exactly the source's bytes.
class ComparingSink : public ByteSink {
 public:
  explicit ComparingSink(ByteSource& expected) : m_expected(expected), m_buffer(64 << 10) {}
  void write(std::span<const std::byte> data) override;
  bool equal() const { return m_equal && m_seen == m_expected.size(); }

 private:
  ByteSource& m_expected;
  std::vector<std::byte> m_buffer;
  bool m_equal = true;
  uint64_t m_seen = 0;
};

class MemorySource : public ByteSource {
 public:
  explicit MemorySource(std::span<const std::byte> data) : m_data(data) {}
  uint64_t size() const override { return m_data.size(); }
  size_t read(std::span<std::byte> out) override;
  void rewind() override { m_pos = 0; }

 private:
  std::span<const std::byte> m_data;
  size_t m_pos = 0;
};

// Reads a local file; the file must not change while it is being sent.
class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path);
  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  uint64_t size() const override { return m_size; }
  size_t read(std::span<std::byte> out) override;
  void rewind() override { m_pos = 0; }

 private:
  std::string m_path;
  int m_fd = -1;
  uint64_t m_size = 0;
  uint64_t m_pos = 0;
};

// Reads a descriptor owned by the caller, from offset 0 to `size`, with pread.
// `handover`: the file is exactly those bytes and nothing writes it any more
// (a finished snapshot spool), so a store may take it whole (handover_fd).
class FdSource : public ByteSource {
 public:
  FdSource(int fd, uint64_t size, std::string name, bool handover = false)
      : m_fd(fd), m_size(size), m_name(std::move(name)), m_handover(handover) {}
  uint64_t size() const override { return m_size; }
  size_t read(std::span<std::byte> out) override;
  void rewind() override { m_pos = 0; }
  int handover_fd() const override { return m_handover ? m_fd : -1; }

 private:
  int m_fd;
  uint64_t m_size;
  std::string m_name;
  bool m_handover;
  uint64_t m_pos = 0;
};

class MemorySink : public ByteSink {
 public:
  void write(std::span<const std::byte> data) override {
    m_data.insert(m_data.end(), data.begin(), data.end());
  }
  std::vector<std::byte>& data() { return m_data; }

 private:
  std::vector<std::byte> m_data;
};

// Appends to a local file descriptor owned by the caller.
class FdSink : public ByteSink {
 public:
  FdSink(int fd, std::string path) : m_fd(fd), m_path(std::move(path)) {}
  void write(std::span<const std::byte> data) override;

 private:
  int m_fd;
  std::string m_path;
};

// Passes at most `limit` bytes on to `out` (all of them without a limit) and
// drops the rest: a server that sent more than the range asked for must not
// corrupt what the caller assembles.
class LimitSink : public ByteSink {
 public:
  LimitSink(ByteSink& out, std::optional<uint64_t> limit) : m_out(out), m_limit(limit) {}
  void write(std::span<const std::byte> data) override;

 private:
  ByteSink& m_out;
  std::optional<uint64_t> m_limit;
  uint64_t m_written = 0;
};

inline std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
// A span of a temporary string would dangle.
std::span<const std::byte> as_bytes(std::string&&) = delete;

}  // namespace walship
