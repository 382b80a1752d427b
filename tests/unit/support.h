// Small helpers shared by the unit tests.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "lib/storage/storage.h"
#include "lib/util/byte_stream.h"

namespace walship::test {

// A fresh directory, removed with everything in it, even the read-only
// folders a test may leave. In /dev/shm when there is one:
// the simulated-time tests create a temp file per compaction, which costs far
// more on a disk filesystem.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string pattern = std::string(base) + "/walship-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    m_path = pattern;
  }
  ~ScratchDir() {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(m_path, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec)) fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::remove_all(m_path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return m_path; }

 private:
  std::string m_path;
};

// A source that owns its text: MemorySource(as_bytes(std::string(...)))
// would point into a destroyed temporary.
class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string text) : m_text(std::move(text)) {}
  uint64_t size() const override { return m_text.size(); }
  size_t read(std::span<std::byte> out) override {
    const size_t n = std::min(out.size(), m_text.size() - m_pos);
    std::memcpy(out.data(), m_text.data() + m_pos, n);
    m_pos += n;
    return n;
  }
  void rewind() override { m_pos = 0; }

 private:
  std::string m_text;
  size_t m_pos = 0;
};

// Forwards every call to a storage the test keeps (and can inspect), for
// code that takes ownership of its Storage.
class BorrowedStorage : public Storage {
 public:
  explicit BorrowedStorage(Storage& inner) : m_inner(inner) {}
  std::string url() const override { return m_inner.url(); }
  void put(const std::string& key, ByteSource& data) override { m_inner.put(key, data); }
  bool put_if_absent(const std::string& key, ByteSource& data) override {
    return m_inner.put_if_absent(key, data);
  }
  bool get(const std::string& key, ByteSink& out, const ByteRange& range) override {
    return m_inner.get(key, out, range);
  }
  std::vector<ObjectInfo> list(const std::string& prefix) override { return m_inner.list(prefix); }
  void remove(const std::vector<std::string>& keys) override { m_inner.remove(keys); }

 private:
  Storage& m_inner;
};

}  // namespace walship::test
