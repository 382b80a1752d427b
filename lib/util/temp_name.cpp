#include "lib/util/temp_name.h"

#include <sys/random.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "lib/util/fs.h"

namespace walship {

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> data(bytes);
  if (::getrandom(data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) {
    const uint64_t fallback = static_cast<uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ULL ^
                              static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data.data()));
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(fallback >> (8 * (i % 8)));
  }
  static constexpr char k_hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes);
  for (const unsigned char b : data) {
    out += k_hex[b >> 4];
    out += k_hex[b & 0x0f];
  }
  return out;
}

std::string temp_path_for(const std::string& final_path) {
  return dir_name(final_path) + "/." + base_name(final_path) + std::string(k_temp_marker) + random_hex(8);
}

bool is_temp_name(std::string_view name) {
  return name.starts_with('.') && name.find(k_temp_marker) != std::string_view::npos;
}

}  // namespace walship
