#include "lib/wal/wal_scan.h"

#include <algorithm>
#include <array>
#include <unordered_map>

#include "lib/util/fs.h"

namespace walship::wal {

namespace {

constexpr size_t k_scan_chunk = size_t{1} << 20;

}  // namespace

std::optional<WalHeader> read_wal_header(int fd, const std::string& path) {
  std::array<std::byte, k_wal_header_size> bytes{};
  if (pread_full(fd, bytes, 0, path) != bytes.size()) return std::nullopt;
  return parse_wal_header(bytes);
}

CommittedFrames scan_wal(int fd, const std::string& path, const WalHeader& header, const WalPosition& from,
                         uint64_t max_frame) {
  const uint64_t frame_size = k_frame_header_size + header.page_size;
  // No bigger than what there is to read: a ship of a few frames (every
  // `walship sync`) must not allocate and zero a whole chunk.
  const uint64_t to_read = max_frame > from.frame_index() ? max_frame - from.frame_index() : 0;
  const size_t frames_per_chunk =
      static_cast<size_t>(std::clamp<uint64_t>(to_read, 1, std::max<size_t>(1, k_scan_chunk / frame_size)));
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

bool wal_holds(int fd, const std::string& path, const WalPosition& position) {
  if (position.offset == 0) return false;
  const std::optional<WalHeader> header = read_wal_header(fd, path);
  if (!header || !position.same_generation(*header)) return false;
  if (position.offset == k_wal_header_size) return header->checksum == position.checksum;
  const uint64_t frame_size = k_frame_header_size + position.page_size;
  std::array<std::byte, k_frame_header_size> bytes{};
  if (position.offset < k_wal_header_size + frame_size ||
      pread_full(fd, bytes, position.offset - frame_size, path) != bytes.size()) {
    return false;
  }
  const FrameHeader frame = parse_frame_header(bytes);
  return frame.salt1 == position.salt1 && frame.salt2 == position.salt2 && frame.commit_db_pages != 0 &&
         frame.checksum == position.checksum;
}

}  // namespace walship::wal
