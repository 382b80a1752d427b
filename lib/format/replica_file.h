// Snapshot and delta files (DESIGN.md, "Replica layout"). Version 1 layout,
// all integers big-endian:
//
//   header, 64 bytes
//     0  magic     8  "WALSHIPS" (snapshot) or "WALSHIPD" (delta)
//     8  version   4  1
//    12  page_size 4  512..65536, a power of two
//    16  min_txid  8
//    24  max_txid  8  snapshots: == min_txid
//    32  db_pages  4  database size in pages after max_txid
//    36  flags     4  0 (readers reject unknown flags)
//    40  commit_ms 8  commit time of max_txid, ms since the Unix epoch (UTC)
//    48  pre_sum   8  whole-database checksum before min_txid (snapshots: 0)
//    56  reserved  8  0
//   frames, repeated
//     0  csize     4  compressed size of the frame (> 0)
//     4  npages    4  pages in the frame (> 0)
//     8  data      csize bytes: one zstd frame (with its content checksum and
//                  content size) whose content is npages x (pgno:4, page
//                  bytes:page_size); that content is at most 4 MiB
//                  (k_max_frame_content) so a reader's memory stays bounded
//   end of frames: 8 zero bytes (csize = 0, npages = 0)
//   trailer, 32 bytes
//     0  post_sum  8  whole-database checksum after max_txid
//     8  pages     8  total pages in all frames
//    16  magic     8  "WALSHIPE"
//    24  file_sum  8  XXH3-64 of every byte of the file before this field
//
// Pages appear in strictly ascending pgno order across the whole file, each
// at most once, never the lock page, never past db_pages. A snapshot holds
// every page of the database but the lock page. Frames are independent so
// they can be decompressed in parallel.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lib/util/byte_stream.h"

namespace walship::format {

inline constexpr uint32_t k_format_version = 1;
inline constexpr size_t k_header_size = 64;
inline constexpr size_t k_trailer_size = 32;
inline constexpr size_t k_frame_header_size = 8;
// Writers fill frames to about this much content (at least one page): large
// enough for zstd to find redundancy, small enough to stream and to
// decompress frames in parallel.
inline constexpr size_t k_frame_target_content = size_t{1} << 20;
// Readers reject larger frames, so a corrupt npages or csize can never make
// them allocate more than about this much; room to grow the writer's target.
inline constexpr size_t k_max_frame_content = size_t{4} << 20;

enum class FileKind { snapshot, delta };

struct FileHeader {
  FileKind kind = FileKind::snapshot;
  uint32_t page_size = 4096;
  uint64_t min_txid = 0;
  uint64_t max_txid = 0;
  uint32_t db_pages = 0;
  uint64_t commit_time_ms = 0;
  uint64_t pre_checksum = 0;
  bool operator==(const FileHeader&) const = default;
};

struct FileTrailer {
  uint64_t post_checksum = 0;
  uint64_t page_count = 0;
  bool operator==(const FileTrailer&) const = default;
};

// The 64 header bytes of `header`, with flags and reserved zero.
std::array<std::byte, k_header_size> encode_header(const FileHeader& header);
// Decodes the first k_header_size bytes of `bytes` (a file or a ranged read
// of its start). Throws Failure("corrupt replica file '<name>': <why>") on any
// inconsistency, and a distinct message for a version newer than this build
// understands. Checks only what the header alone can prove.
FileHeader decode_header(std::span<const std::byte> bytes, const std::string& name);

// Decodes the fields of a trailer from its k_trailer_size bytes (a file's
// last bytes, fetched with one ranged read): nullopt when `bytes` is not one
// (wrong size or magic). The file checksum is not checked: it covers the
// whole file, which only ReplicaReader reads.
std::optional<FileTrailer> decode_trailer(std::span<const std::byte> bytes);

// Pages a writer puts in each frame: about k_frame_target_content, at least 1.
inline uint32_t pages_per_frame(uint32_t page_size) {
  const uint64_t n = k_frame_target_content / (page_size + uint64_t{4});
  return n == 0 ? 1u : static_cast<uint32_t>(n);
}

// Writes one file to `out` as pages arrive; memory stays bounded by one frame.
class ReplicaWriter {
 public:
  // zstd_level: 1-3 on the hot path (deltas), higher for snapshots. Writes
  // the header at once. Throws Failure for a header no reader would accept
  // (bad page size, min > max, a snapshot with a range or a pre_checksum).
  // frame_pages: pages per frame, 0 for pages_per_frame(page_size); tests
  // and fuzz seeds use small frames to get many frames from a few pages.
  ReplicaWriter(ByteSink& out, const FileHeader& header, int zstd_level, uint32_t frame_pages = 0);
  ~ReplicaWriter();

  // Compresses up to `threads` frames at once (call before the first page).
  // Frames still reach `out` in order, from the caller's thread; memory grows
  // by about 2 MiB per thread. Snapshots use it; deltas are small.
  void set_compression_threads(int threads);
  ReplicaWriter(const ReplicaWriter&) = delete;
  ReplicaWriter& operator=(const ReplicaWriter&) = delete;

  // Pages must come in strictly ascending pgno order, 1 <= pgno <= db_pages,
  // never the lock page; page.size() == page_size. Throws Failure otherwise
  // (a caller bug, caught before it becomes a file every reader rejects).
  // The bytes are copied: `page` may be reused as soon as this returns.
  void add_page(uint32_t pgno, std::span<const std::byte> page);
  // Flushes the last frame and writes the end marker and trailer. For a
  // snapshot, throws Failure unless every page but the lock page was added.
  void finish(uint64_t post_checksum);

  // Bytes handed to `out` so far; the file's size once finish() returned.
  uint64_t bytes_written() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

struct PageRef {
  uint32_t pgno = 0;
  std::span<const std::byte> data;
};

// Reads one file from `in`, verifying as it goes. Pages handed out by
// next_frame() stay valid until the next call. The trailer and the file
// checksum are verified when next_frame() returns false, so a caller must not
// trust (commit) anything before that.
class ReplicaReader {
 public:
  // Reads and checks the header from the current position of `in`. `name`
  // (the object's URL or path) is named by every error. Throws Failure.
  ReplicaReader(ByteSource& in, std::string name);
  ~ReplicaReader();
  ReplicaReader(const ReplicaReader&) = delete;
  ReplicaReader& operator=(const ReplicaReader&) = delete;

  const FileHeader& header() const;
  // Decompresses and checks up to `threads` frames ahead of the caller, each
  // on a thread of its own, while the caller uses the frame before (the file
  // is still read, and everything handed out or thrown comes, in file
  // order). Memory grows by about 2 MiB per thread. 1, the default: frames
  // are decoded on the caller's thread, when it asks for them.
  void set_decode_threads(int threads);
  // Hashes each frame's pages as it decodes them (on the decoding threads):
  // frame_hash() is then the XOR of format::page_hash over the pages the
  // last next_frame() handed out, the frame's share of the whole-database
  // checksum.
  void set_page_hashing(bool on);
  uint64_t frame_hash() const;
  // Replaces `pages` with the next frame's pages and returns true, or, at the
  // end marker, verifies the trailer, every count, the file checksum and that
  // nothing follows, and returns false (and false again on later calls).
  // Throws Failure("corrupt replica file '<name>': ...") on any problem.
  bool next_frame(std::vector<PageRef>& pages);
  const FileTrailer& trailer() const;  // valid once next_frame() returned false

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace walship::format
