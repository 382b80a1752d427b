// Small helpers shared by the unit tests.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>

#include "lib/util/byte_stream.h"

namespace walship::test {

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

}  // namespace walship::test
