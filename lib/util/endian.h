// On-disk integers are big-endian; every encode and decode goes through here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace walship {

inline void put_be32(std::byte* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>(v >> (24 - 8 * i));
}

inline void put_be64(std::byte* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(v >> (56 - 8 * i));
}

inline uint32_t get_be32(const std::byte* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint32_t>(in[i]);
  return v;
}

inline uint64_t get_be64(const std::byte* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint64_t>(in[i]);
  return v;
}

inline uint16_t get_be16(const std::byte* in) {
  return static_cast<uint16_t>((static_cast<uint32_t>(in[0]) << 8) | static_cast<uint32_t>(in[1]));
}

}  // namespace walship
