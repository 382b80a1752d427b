#include "lib/wal/wal_index.h"

#include <cstring>
#include <thread>

#include "lib/util/endian.h"
#include "lib/util/fs.h"

namespace walship::wal {

namespace {

constexpr int k_index_read_attempts = 5;

// Field offsets in one header copy (native byte order: SQLite keeps the
// -shm in memory as a struct).
constexpr size_t k_off_change = 8;
constexpr size_t k_off_is_init = 12;
constexpr size_t k_off_max_frame = 16;
constexpr size_t k_off_frame_checksum = 24;
constexpr size_t k_off_salt = 32;

uint32_t load_native32(const std::byte* p) {
  uint32_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

uint32_t WalIndexHeader::salt1() const { return get_be32(salt.data()); }

uint32_t WalIndexHeader::salt2() const { return get_be32(salt.data() + 4); }

WalIndexHeader decode_wal_index_header(std::span<const std::byte, k_wal_index_header_size> bytes) {
  WalIndexHeader index;
  index.change = load_native32(bytes.data() + k_off_change);
  index.initialised = bytes[k_off_is_init] == std::byte{1};
  index.max_frame = load_native32(bytes.data() + k_off_max_frame);
  index.frame_checksum = {load_native32(bytes.data() + k_off_frame_checksum),
                          load_native32(bytes.data() + k_off_frame_checksum + 4)};
  std::memcpy(index.salt.data(), bytes.data() + k_off_salt, index.salt.size());
  return index;
}

std::optional<WalIndexHeader> decode_wal_index(
    std::span<const std::byte, 2 * k_wal_index_header_size> bytes) {
  const auto first = bytes.first<k_wal_index_header_size>();
  if (std::memcmp(first.data(), bytes.data() + k_wal_index_header_size, k_wal_index_header_size) != 0)
    return std::nullopt;
  WalIndexHeader index = decode_wal_index_header(first);
  if (!index.initialised) return std::nullopt;
  return index;
}

std::optional<WalIndexHeader> read_wal_index_header(int fd, const std::string& path) {
  std::array<std::byte, 2 * k_wal_index_header_size> bytes{};
  for (int attempt = 0; attempt < k_index_read_attempts; ++attempt) {
    if (attempt > 0) std::this_thread::yield();
    if (pread_full(fd, bytes, 0, path) != bytes.size()) return std::nullopt;
    const auto first = std::span<const std::byte>(bytes).first<k_wal_index_header_size>();
    if (std::memcmp(first.data(), bytes.data() + k_wal_index_header_size, k_wal_index_header_size) != 0)
      continue;  // a writer is between the two copies: look again
    return decode_wal_index(bytes);
  }
  return std::nullopt;
}

uint32_t read_wal_backfilled(int fd, const std::string& path) {
  std::array<std::byte, 4> bytes{};
  if (pread_full(fd, bytes, k_wal_index_backfill_offset, path) != bytes.size()) return 0;
  return load_native32(bytes.data());
}

bool wal_index_matches(const WalIndexHeader& index, const WalHeader& header) {
  return index.salt1() == header.salt1 && index.salt2() == header.salt2;
}

WalPosition read_position(const WalIndexHeader& snapshot, uint32_t page_size,
                          const std::optional<WalHeader>& wal) {
  WalPosition position;
  position.page_size = page_size;
  position.salt1 = snapshot.salt1();
  position.salt2 = snapshot.salt2();
  position.offset = k_wal_header_size + uint64_t{snapshot.max_frame} * (k_frame_header_size + page_size);
  position.checksum = snapshot.frame_checksum;
  if (wal && position.same_generation(*wal)) {
    position.checkpoint_seq = wal->checkpoint_seq;
    if (snapshot.max_frame == 0) position.checksum = wal->checksum;
  }
  return position;
}

}  // namespace walship::wal
