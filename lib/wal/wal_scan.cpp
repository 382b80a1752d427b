#include "lib/wal/wal_scan.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "lib/util/endian.h"
#include "lib/util/fs.h"

namespace walship::wal {

namespace {

constexpr size_t k_scan_chunk = size_t{1} << 20;
constexpr size_t k_index_header_size = 48;
constexpr int k_index_read_attempts = 5;

}  // namespace

WalPosition WalPosition::start_of(const WalHeader& header) {
  WalPosition position;
  position.salt1 = header.salt1;
  position.salt2 = header.salt2;
  position.checkpoint_seq = header.checkpoint_seq;
  position.page_size = header.page_size;
  position.offset = k_wal_header_size;
  position.checksum = header.checksum;
  return position;
}

uint64_t WalPosition::frame_index() const {
  return (offset - k_wal_header_size) / (k_frame_header_size + page_size);
}

std::optional<WalHeader> read_wal_header(int fd, const std::string& path) {
  std::array<std::byte, k_wal_header_size> bytes{};
  if (pread_full(fd, bytes, 0, path) != bytes.size()) return std::nullopt;
  return parse_wal_header(bytes);
}

CommittedFrames scan_wal(int fd, const std::string& path, const WalHeader& header, const WalPosition& from,
                         uint64_t max_frame) {
  const uint64_t frame_size = k_frame_header_size + header.page_size;
  const size_t frames_per_chunk = std::max<size_t>(1, k_scan_chunk / frame_size);
  std::vector<std::byte> buffer(frames_per_chunk * frame_size);

  CommittedFrames result;
  result.end = from;
  std::vector<std::pair<uint32_t, uint64_t>> frames;  // every frame read, in WAL order
  size_t committed_frames = 0;
  Checksum running = from.checksum;
  uint64_t offset = from.offset;
  uint64_t frame_number = from.frame_index() + 1;
  bool done = false;
  while (!done && frame_number <= max_frame) {
    const uint64_t wanted = std::min<uint64_t>(frames_per_chunk, max_frame - frame_number + 1);
    const size_t got = pread_full(fd, std::span(buffer).first(wanted * frame_size), offset, path);
    const uint64_t whole = got / frame_size;
    if (whole < wanted) done = true;
    for (uint64_t i = 0; i < whole; ++i, ++frame_number, offset += frame_size) {
      const std::span<const std::byte> bytes =
          std::span<const std::byte>(buffer).subspan(i * frame_size, frame_size);
      const FrameHeader frame = parse_frame_header(bytes);
      Checksum next;
      if (!frame_is_valid(header, frame, bytes.first(k_frame_header_size), bytes.subspan(k_frame_header_size),
                          running, next)) {
        done = true;
        break;
      }
      running = next;
      frames.emplace_back(frame.pgno, offset + k_frame_header_size);
      if (frame.commit_db_pages != 0) {
        committed_frames = frames.size();
        result.commits += 1;
        result.db_pages = frame.commit_db_pages;
        result.end.offset = offset + frame_size;
        result.end.checksum = running;
      }
    }
  }
  result.frames = committed_frames;
  // The newest version of each page wins; frames after the last commit belong
  // to a transaction still being written (or abandoned) and are left out.
  std::unordered_map<uint32_t, uint64_t> newest;
  newest.reserve(committed_frames);
  for (size_t i = 0; i < committed_frames; ++i) newest[frames[i].first] = frames[i].second;
  result.pages.assign(newest.begin(), newest.end());
  std::sort(result.pages.begin(), result.pages.end());
  return result;
}

std::optional<WalIndexHeader> read_wal_index_header(int fd, const std::string& path) {
  std::array<std::byte, 2 * k_index_header_size> bytes{};
  for (int attempt = 0; attempt < k_index_read_attempts; ++attempt) {
    if (attempt > 0) std::this_thread::yield();
    if (pread_full(fd, bytes, 0, path) != bytes.size()) return std::nullopt;
    if (std::memcmp(bytes.data(), bytes.data() + k_index_header_size, k_index_header_size) != 0) continue;
    // Layout (native byte order): iVersion 4, unused 4, iChange 4, isInit 1,
    // bigEndCksum 1, szPage 2, mxFrame 4, nPage 4, aFrameCksum 8, aSalt 8, aCksum 8.
    if (bytes[12] != std::byte{1}) return std::nullopt;
    WalIndexHeader index;
    std::memcpy(&index.max_frame, bytes.data() + 16, 4);
    std::memcpy(&index.change, bytes.data() + 8, 4);
    std::memcpy(index.salt.data(), bytes.data() + 32, 8);
    return index;
  }
  return std::nullopt;
}

bool wal_index_matches(const WalIndexHeader& index, const WalHeader& header) {
  std::array<std::byte, 8> salt{};
  put_be32(salt.data(), header.salt1);
  put_be32(salt.data() + 4, header.salt2);
  return salt == index.salt;
}

}  // namespace walship::wal
