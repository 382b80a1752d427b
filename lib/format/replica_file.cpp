#include "lib/format/replica_file.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <exception>
#include <future>
#include <string_view>
#include <system_error>

// Header-only use of xxHash: the static build links no extra library.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/util/endian.h"
#include "lib/util/error.h"

namespace walship::format {

namespace {

constexpr std::string_view k_snapshot_magic = "WALSHIPS";
constexpr std::string_view k_delta_magic = "WALSHIPD";
constexpr std::string_view k_trailer_magic = "WALSHIPE";
constexpr size_t k_magic_size = 8;
constexpr size_t k_pgno_size = 4;
// The end marker and the trailer are written (and read) as one block.
constexpr size_t k_end_size = k_frame_header_size + k_trailer_size;
constexpr size_t k_file_sum_size = 8;

// Header field offsets (replica_file.h).
constexpr size_t k_off_version = 8;
constexpr size_t k_off_page_size = 12;
constexpr size_t k_off_min_txid = 16;
constexpr size_t k_off_max_txid = 24;
constexpr size_t k_off_db_pages = 32;
constexpr size_t k_off_flags = 36;
constexpr size_t k_off_commit_ms = 40;
constexpr size_t k_off_pre_sum = 48;
constexpr size_t k_off_reserved = 56;

// Trailer field offsets.
constexpr size_t k_off_post_sum = 0;
constexpr size_t k_off_pages = 8;
constexpr size_t k_off_trailer_magic = 16;
constexpr size_t k_off_file_sum = 24;

// Fuzz builds (tests/fuzz) cannot forge file checksums, so they skip that one
// comparison to let mutated inputs reach everything behind it. Never defined
// in a build that ships.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
constexpr bool k_check_file_sum = false;
#else
constexpr bool k_check_file_sum = true;
#endif

// zstd frame format (RFC 8878): a little-endian magic, then the frame header
// descriptor whose bit 2 says a content checksum follows the frame.
constexpr uint32_t k_zstd_magic = 0xFD2FB528u;
constexpr std::byte k_zstd_checksum_bit{0x04};

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* cctx) const { ZSTD_freeCCtx(cctx); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* dctx) const { ZSTD_freeDCtx(dctx); }
};
using CCtxPtr = std::unique_ptr<ZSTD_CCtx, CCtxDeleter>;
using DCtxPtr = std::unique_ptr<ZSTD_DCtx, DCtxDeleter>;

bool has_magic(const std::byte* p, std::string_view magic) {
  return std::memcmp(p, magic.data(), k_magic_size) == 0;
}

void put_magic(std::byte* out, std::string_view magic) { std::memcpy(out, magic.data(), k_magic_size); }

// zstd's own framing is little-endian; only its magic is read here.
uint32_t get_le32(const std::byte* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

std::string hex(uint64_t v) { return "0x" + txid_hex(v); }

// Bytes of one frame's content: npages records of (pgno, page).
uint64_t frame_content_size(uint64_t npages, uint32_t page_size) {
  return npages * (k_pgno_size + page_size);
}

[[noreturn]] void throw_corrupt(const std::string& name, const std::string& why) {
  throw Failure("corrupt replica file '" + name + "': " + why);
}

[[noreturn]] void throw_writer(const std::string& why) {
  throw Failure("unable to write replica file: " + why);
}

}  // namespace

std::array<std::byte, k_header_size> encode_header(const FileHeader& header) {
  std::array<std::byte, k_header_size> out{};
  put_magic(out.data(), header.kind == FileKind::snapshot ? k_snapshot_magic : k_delta_magic);
  put_be32(out.data() + k_off_version, k_format_version);
  put_be32(out.data() + k_off_page_size, header.page_size);
  put_be64(out.data() + k_off_min_txid, header.min_txid);
  put_be64(out.data() + k_off_max_txid, header.max_txid);
  put_be32(out.data() + k_off_db_pages, header.db_pages);
  put_be32(out.data() + k_off_flags, 0);
  put_be64(out.data() + k_off_commit_ms, header.commit_time_ms);
  put_be64(out.data() + k_off_pre_sum, header.pre_checksum);
  put_be64(out.data() + k_off_reserved, 0);
  return out;
}

FileHeader decode_header(std::span<const std::byte> bytes, const std::string& name) {
  if (bytes.size() < k_header_size) {
    throw_corrupt(name, "truncated header (" + std::to_string(bytes.size()) + " of " +
                            std::to_string(k_header_size) + " bytes)");
  }
  const std::byte* p = bytes.data();
  FileHeader header;
  if (has_magic(p, k_snapshot_magic)) {
    header.kind = FileKind::snapshot;
  } else if (has_magic(p, k_delta_magic)) {
    header.kind = FileKind::delta;
  } else {
    throw_corrupt(name, "bad magic (not a walship snapshot or delta)");
  }
  // The version is checked before any other field: a newer version may give
  // them new meanings, and the user needs "upgrade", not "corrupt".
  const uint32_t version = get_be32(p + k_off_version);
  if (version > k_format_version) {
    throw Failure("replica file '" + name + "' has format version " + std::to_string(version) +
                  "; this walship reads version " + std::to_string(k_format_version) + ": upgrade walship");
  }
  if (version != k_format_version) throw_corrupt(name, "invalid format version " + std::to_string(version));
  header.page_size = get_be32(p + k_off_page_size);
  header.min_txid = get_be64(p + k_off_min_txid);
  header.max_txid = get_be64(p + k_off_max_txid);
  header.db_pages = get_be32(p + k_off_db_pages);
  const uint32_t flags = get_be32(p + k_off_flags);
  header.commit_time_ms = get_be64(p + k_off_commit_ms);
  header.pre_checksum = get_be64(p + k_off_pre_sum);
  const uint64_t reserved = get_be64(p + k_off_reserved);

  if (!valid_page_size(header.page_size)) {
    throw_corrupt(name, "invalid page size " + std::to_string(header.page_size));
  }
  if (flags != 0) throw_corrupt(name, "unknown flags " + hex(flags));
  if (reserved != 0) throw_corrupt(name, "reserved header field is " + hex(reserved) + ", not 0");
  if (header.min_txid > header.max_txid) {
    throw_corrupt(
        name, "min TXID " + txid_hex(header.min_txid) + " is after max TXID " + txid_hex(header.max_txid));
  }
  if (header.kind == FileKind::snapshot) {
    if (header.min_txid != header.max_txid) {
      throw_corrupt(name, "snapshot spans TXIDs " + txid_hex(header.min_txid) + "-" +
                              txid_hex(header.max_txid) + " instead of one");
    }
    if (header.pre_checksum != 0)
      throw_corrupt(name, "snapshot has a pre-checksum " + hex(header.pre_checksum));
  }
  return header;
}

std::optional<FileTrailer> decode_trailer(std::span<const std::byte> bytes) {
  if (bytes.size() != k_trailer_size || !has_magic(bytes.data() + k_off_trailer_magic, k_trailer_magic))
    return std::nullopt;
  FileTrailer trailer;
  trailer.post_checksum = get_be64(bytes.data() + k_off_post_sum);
  trailer.page_count = get_be64(bytes.data() + k_off_pages);
  return trailer;
}

// ---------------------------------------------------------------------------
// Writer

// A buffer that is not zeroed: a frame's buffers are sized for a whole
// frame (about 1 MiB) but a delta of a few pages touches a few KiB of them,
// and zeroing the rest cost a small delta (every `walship sync`) more than
// compressing it. Untouched pages of a large allocation are never faulted in.
struct RawBuffer {
  std::unique_ptr<std::byte[]> bytes;
  size_t length = 0;

  void allocate(size_t n) {
    bytes = std::make_unique_for_overwrite<std::byte[]>(n);
    length = n;
  }
  std::byte* data() { return bytes.get(); }
  size_t size() const { return length; }
  void swap(RawBuffer& other) noexcept {
    bytes.swap(other.bytes);
    std::swap(length, other.length);
  }
};

// One frame being compressed: its records, its compressed bytes (after room
// for the frame header) and its own zstd context, so several frames can be
// compressed at once (see set_compression_threads()).
struct CompressSlot {
  CCtxPtr cctx;
  RawBuffer content;
  RawBuffer frame;
  uint32_t pages = 0;
  size_t content_size = 0;
  std::future<size_t> pending;  // declared last: joined before the buffers it uses are freed

  size_t compress() {
    const size_t csize = ZSTD_compress2(cctx.get(), frame.data() + k_frame_header_size,
                                        frame.size() - k_frame_header_size, content.data(), content_size);
    if (ZSTD_isError(csize)) throw_writer(std::string("zstd failed: ") + ZSTD_getErrorName(csize));
    return csize;
  }
};

struct ReplicaWriter::Impl {
  Impl(ByteSink& sink, const FileHeader& file_header) : out(sink), header(file_header) {}

  ByteSink& out;
  FileHeader header;
  int zstd_level = 0;
  XXH3_state_t file_hash;
  uint32_t lock_pgno = 0;
  uint32_t frame_capacity = 0;  // pages per frame
  size_t record_size = 0;       // pgno + page
  // content holds the frame being filled; a full frame is swapped into a
  // slot to be compressed. Buffers are sized once, so no page costs an
  // allocation.
  RawBuffer content;
  std::vector<CompressSlot> slots;
  size_t next_slot = 0;
  uint32_t frame_pages = 0;
  uint32_t last_pgno = 0;
  uint64_t page_count = 0;
  uint64_t written = 0;
  bool finished = false;
  // Set while a frame is being handed out: if the sink throws, the file is
  // already broken and a full frame buffer must not take more pages.
  bool broken = false;

  void emit(std::span<const std::byte> bytes) {
    XXH3_64bits_update(&file_hash, bytes.data(), bytes.size());
    out.write(bytes);
    written += bytes.size();
  }

  void check_usable(const char* call) const {
    if (finished) throw_writer(std::string(call) + " called after finish()");
    if (broken) throw_writer(std::string(call) + " called after a failed write");
  }

  void add_slot() {
    CompressSlot& slot = slots.emplace_back();
    slot.cctx.reset(ZSTD_createCCtx());
    if (!slot.cctx) throw std::bad_alloc();
    for (const auto& [param, value] :
         {std::pair{ZSTD_c_compressionLevel, zstd_level}, std::pair{ZSTD_c_checksumFlag, 1},
          std::pair{ZSTD_c_contentSizeFlag, 1}}) {
      const size_t rc = ZSTD_CCtx_setParameter(slot.cctx.get(), param, value);
      if (ZSTD_isError(rc)) throw_writer(std::string("zstd rejected a parameter: ") + ZSTD_getErrorName(rc));
    }
    slot.content.allocate(frame_capacity * record_size);
    slot.frame.allocate(k_frame_header_size + ZSTD_compressBound(slot.content.size()));
  }

  void emit_slot(CompressSlot& slot, size_t csize) {
    put_be32(slot.frame.data(), static_cast<uint32_t>(csize));
    put_be32(slot.frame.data() + 4, slot.pages);
    emit(std::span(slot.frame.data(), k_frame_header_size + csize));
  }

  // Writes out the slot's frame once its compression is done.
  void drain(CompressSlot& slot) {
    if (!slot.pending.valid()) return;
    broken = true;
    emit_slot(slot, slot.pending.get());
    broken = false;
  }

  // Frames go out in the order they were filled: slots are used round-robin
  // and a slot is drained before it is reused.
  void flush_frame() {
    if (frame_pages == 0) return;
    CompressSlot& slot = slots[next_slot];
    drain(slot);
    broken = true;
    slot.content.swap(content);
    slot.pages = frame_pages;
    slot.content_size = frame_pages * record_size;
    frame_pages = 0;
    if (slots.size() == 1) {
      emit_slot(slot, slot.compress());
    } else {
      slot.pending = std::async(std::launch::async, [&slot] { return slot.compress(); });
      next_slot = (next_slot + 1) % slots.size();
    }
    broken = false;
  }

  void drain_all() {
    for (size_t i = 0; i < slots.size(); ++i) drain(slots[(next_slot + i) % slots.size()]);
  }
};

ReplicaWriter::ReplicaWriter(ByteSink& out, const FileHeader& header, int zstd_level, uint32_t frame_pages)
    : m_impl(std::make_unique<Impl>(out, header)) {
  if (!valid_page_size(header.page_size)) {
    throw_writer("page size " + std::to_string(header.page_size) +
                 " is not a power of two from 512 to 65536");
  }
  if (header.min_txid > header.max_txid) {
    throw_writer("min TXID " + txid_hex(header.min_txid) + " is after max TXID " + txid_hex(header.max_txid));
  }
  if (header.kind == FileKind::snapshot && (header.min_txid != header.max_txid || header.pre_checksum != 0)) {
    throw_writer("a snapshot has one TXID and no pre-checksum");
  }
  if (frame_content_size(frame_pages, header.page_size) > k_max_frame_content) {
    throw_writer(std::to_string(frame_pages) + " pages of " + std::to_string(header.page_size) +
                 " bytes make a frame larger than readers accept");
  }
  Impl& s = *m_impl;
  s.zstd_level = zstd_level;
  s.lock_pgno = lock_page(header.page_size);
  s.frame_capacity = frame_pages != 0 ? frame_pages : pages_per_frame(header.page_size);
  s.record_size = k_pgno_size + header.page_size;
  s.content.allocate(s.frame_capacity * s.record_size);
  s.add_slot();
  XXH3_INITSTATE(&s.file_hash);
  XXH3_64bits_reset(&s.file_hash);
  s.emit(encode_header(header));
}

ReplicaWriter::~ReplicaWriter() = default;

void ReplicaWriter::set_compression_threads(int threads) {
  Impl& s = *m_impl;
  if (s.page_count != 0) throw_writer("set_compression_threads() called after add_page()");
  while (static_cast<int>(s.slots.size()) < threads) s.add_slot();
}

void ReplicaWriter::add_page(uint32_t pgno, std::span<const std::byte> page) {
  Impl& s = *m_impl;
  s.check_usable("add_page()");
  if (page.size() != s.header.page_size) {
    throw_writer("page " + std::to_string(pgno) + " has " + std::to_string(page.size()) +
                 " bytes, not the page size " + std::to_string(s.header.page_size));
  }
  if (pgno == 0 || pgno > s.header.db_pages) {
    throw_writer("page " + std::to_string(pgno) + " is outside the database's " +
                 std::to_string(s.header.db_pages) + " pages");
  }
  if (pgno <= s.last_pgno) {
    throw_writer("page " + std::to_string(pgno) + " added after page " + std::to_string(s.last_pgno) +
                 ": pages must ascend, each once");
  }
  if (pgno == s.lock_pgno)
    throw_writer("page " + std::to_string(pgno) + " is SQLite's lock page, never stored");
  std::byte* record = s.content.data() + s.frame_pages * s.record_size;
  put_be32(record, pgno);
  std::memcpy(record + k_pgno_size, page.data(), page.size());
  s.last_pgno = pgno;
  ++s.page_count;
  if (++s.frame_pages == s.frame_capacity) s.flush_frame();
}

void ReplicaWriter::finish(uint64_t post_checksum) {
  Impl& s = *m_impl;
  s.check_usable("finish()");
  if (s.header.kind == FileKind::snapshot) {
    const uint64_t expected = stored_page_count(s.header.db_pages, s.header.page_size);
    if (s.page_count != expected) {
      throw_writer("snapshot has " + std::to_string(s.page_count) + " pages but a database of " +
                   std::to_string(s.header.db_pages) + " pages stores " + std::to_string(expected));
    }
  }
  s.flush_frame();
  s.drain_all();
  std::array<std::byte, k_end_size> end{};  // starts with the zero end marker
  std::byte* trailer = end.data() + k_frame_header_size;
  put_be64(trailer + k_off_post_sum, post_checksum);
  put_be64(trailer + k_off_pages, s.page_count);
  put_magic(trailer + k_off_trailer_magic, k_trailer_magic);
  XXH3_64bits_update(&s.file_hash, end.data(), end.size() - k_file_sum_size);
  put_be64(trailer + k_off_file_sum, XXH3_64bits_digest(&s.file_hash));
  s.broken = true;
  s.out.write(end);
  s.written += end.size();
  s.broken = false;
  s.finished = true;
}

uint64_t ReplicaWriter::bytes_written() const { return m_impl->written; }

// ---------------------------------------------------------------------------
// Reader

struct ReplicaReader::Impl {
  Impl(ByteSource& source, std::string object_name) : in(source), name(std::move(object_name)) {}

  // One frame as read from the file: decoded (decompressed, checked, its
  // pages hashed) on the caller's thread or on one of its own, and handed
  // out in file order. Its buffers are reused by later frames, so a restore
  // of a multi-GiB file allocates a few MiB once per slot.
  struct Slot {
    uint64_t index = 0;  // 0-based frame number
    uint64_t start = 0;  // offset of its frame header
    uint32_t csize = 0;
    uint32_t npages = 0;
    std::vector<std::byte> compressed;
    std::vector<std::byte> content;
    DCtxPtr dctx;
    uint64_t hash = 0;         // XOR of its pages' page_hash, when hashing
    std::exception_ptr error;  // what reading or decoding it found wrong
    std::future<void> decoded;
  };

  ByteSource& in;
  const std::string name;
  XXH3_state_t file_hash;
  FileHeader header;
  FileTrailer trailer;
  uint32_t lock_pgno = 0;
  size_t record_size = 0;
  uint64_t max_frame_pages = 0;
  int threads = 1;
  bool hash_pages = false;
  uint32_t last_pgno = 0;
  uint64_t page_count = 0;
  uint64_t frames_read = 0;
  uint64_t offset = 0;       // bytes consumed from `in`
  uint64_t frame_start = 0;  // offset of the header of the frame being read
  bool read_all = false;     // the end marker (or a broken frame) was read: no frame follows
  bool done = false;
  bool failed = false;  // a Failure was thrown: the position in `in` is lost
  // Last, so that they are destroyed first: a slot's destructor waits for
  // its decode, which reads the members above.
  std::deque<std::unique_ptr<Slot>> queue;  // read, decoded or being decoded, in file order
  std::unique_ptr<Slot> current;            // what next_frame handed out last
  std::vector<std::unique_ptr<Slot>> spare;

  enum class Part { header, frame, trailer };

  // Where in the file a problem is. Built only for error messages, so the
  // hot path allocates no strings.
  std::string describe(Part part) const {
    switch (part) {
      case Part::header: return "the header";
      case Part::frame: return frame_where(frames_read, frame_start);
      case Part::trailer: return "the trailer";
    }
    return "";
  }
  static std::string frame_where(uint64_t index, uint64_t start) {
    return "frame " + std::to_string(index + 1) + " (at byte " + std::to_string(start) + ")";
  }

  // Fills `out` completely from `in` (ByteSource::read may return short
  // reads) and feeds the first `hashed` bytes to the file checksum.
  void read_exact(std::span<std::byte> out, size_t hashed, Part part) {
    size_t got = 0;
    while (got < out.size()) {
      const size_t n = in.read(out.subspan(got));
      if (n == 0) {
        throw_corrupt(name, "truncated in " + describe(part) + ": the file ends at byte " +
                                std::to_string(offset + got));
      }
      got += n;
    }
    offset += got;
    XXH3_64bits_update(&file_hash, out.data(), hashed);
  }

  void read_header() {
    std::array<std::byte, k_header_size> bytes{};
    read_exact(bytes, bytes.size(), Part::header);
    header = decode_header(bytes, name);
    lock_pgno = lock_page(header.page_size);
    record_size = k_pgno_size + header.page_size;
    max_frame_pages = k_max_frame_content / record_size;
  }

  // Reads frames ahead until `threads` are queued or the end marker is
  // read; each one's decode starts as soon as it is read.
  void fill() {
    while (!read_all && queue.size() < static_cast<size_t>(threads)) {
      std::unique_ptr<Slot> slot;
      if (spare.empty()) {
        slot = std::make_unique<Slot>();
      } else {
        slot = std::move(spare.back());
        spare.pop_back();
      }
      slot->index = frames_read;
      slot->start = frame_start = offset;
      slot->hash = 0;
      slot->error = nullptr;
      try {
        if (!read_frame(*slot)) {
          read_all = true;
          spare.push_back(std::move(slot));
          return;
        }
      } catch (const Failure&) {
        // Raised when the caller reaches this frame, after the ones before.
        slot->error = std::current_exception();
        read_all = true;
        queue.push_back(std::move(slot));
        return;
      }
      ++frames_read;
      Slot* s = slot.get();
      if (threads > 1) {
        try {
          s->decoded = std::async(std::launch::async, [this, s] { decode(*s); });
        } catch (const std::system_error&) {
          decode(*s);  // no thread to be had: decode it here
        }
      } else {
        decode(*s);
      }
      queue.push_back(std::move(slot));
    }
  }

  // Reads one frame's header and compressed bytes into `s`; false at the end
  // marker. Checks what bounds the reading.
  bool read_frame(Slot& s) {
    std::array<std::byte, k_frame_header_size> frame_header{};
    read_exact(frame_header, frame_header.size(), Part::frame);
    s.csize = get_be32(frame_header.data());
    s.npages = get_be32(frame_header.data() + 4);
    if (s.csize == 0 && s.npages == 0) return false;
    const std::string where = describe(Part::frame);
    if (s.csize == 0 || s.npages == 0) {
      throw_corrupt(name, where + " has " + std::to_string(s.csize) + " compressed bytes and " +
                              std::to_string(s.npages) + " pages: both must be non-zero");
    }
    if (s.npages > max_frame_pages) {
      throw_corrupt(name, where + " claims " + std::to_string(s.npages) + " pages, more than the " +
                              std::to_string(max_frame_pages) + " a frame may hold");
    }
    const size_t content_size = frame_content_size(s.npages, header.page_size);
    // Bounding csize by what zstd could ever produce for this content keeps a
    // corrupt length from making us allocate or read gigabytes.
    if (s.csize > ZSTD_compressBound(content_size)) {
      throw_corrupt(name, where + " claims " + std::to_string(s.csize) + " compressed bytes for " +
                              std::to_string(content_size) + " bytes of pages");
    }
    if (s.compressed.size() < s.csize) s.compressed.resize(s.csize);
    read_exact(std::span<std::byte>(s.compressed.data(), s.csize), s.csize, Part::frame);
    return true;
  }

  // Decompresses and checks one frame read whole, and hashes its pages when
  // asked; on any thread. Reads only what no frame changes; what it finds
  // wrong goes to s.error.
  void decode(Slot& s) const noexcept {
    try {
      const auto where = [&s] { return frame_where(s.index, s.start); };
      const size_t content_size = frame_content_size(s.npages, header.page_size);
      if (s.content.size() < content_size) s.content.resize(content_size);
      const std::span<const std::byte> src(s.compressed.data(), s.csize);
      // Exactly one zstd frame that declares this content size and carries
      // its content checksum: nothing hidden after it, nothing unchecked in it.
      if (s.csize < 5 || get_le32(src.data()) != k_zstd_magic ||
          (src[4] & k_zstd_checksum_bit) == std::byte{0}) {
        throw_corrupt(name, where() + " is not a checksummed zstd frame");
      }
      const size_t frame_size = ZSTD_findFrameCompressedSize(src.data(), src.size());
      if (ZSTD_isError(frame_size) || frame_size != s.csize) {
        throw_corrupt(name, where() + " is not exactly one zstd frame");
      }
      const unsigned long long declared = ZSTD_getFrameContentSize(src.data(), src.size());
      if (declared != content_size) {
        throw_corrupt(name, where() + " declares " +
                                (declared == ZSTD_CONTENTSIZE_UNKNOWN || declared == ZSTD_CONTENTSIZE_ERROR
                                     ? std::string("no content size")
                                     : std::to_string(declared) + " bytes") +
                                " but " + std::to_string(s.npages) + " pages need " +
                                std::to_string(content_size));
      }
      if (!s.dctx) {
        s.dctx.reset(ZSTD_createDCtx());
        if (!s.dctx) throw std::bad_alloc();
      }
      const size_t n =
          ZSTD_decompressDCtx(s.dctx.get(), s.content.data(), content_size, src.data(), src.size());
      if (ZSTD_isError(n)) throw_corrupt(name, where() + " does not decompress: " + ZSTD_getErrorName(n));
      if (n != content_size) {
        throw_corrupt(name, where() + " decompresses to " + std::to_string(n) + " bytes, not " +
                                std::to_string(content_size));
      }
      if (hash_pages) {
        for (size_t i = 0; i < s.npages; ++i) {
          const std::byte* record = s.content.data() + i * record_size;
          s.hash ^=
              page_hash(get_be32(record), std::span<const std::byte>(record + k_pgno_size, header.page_size));
        }
      }
    } catch (...) {
      s.error = std::current_exception();
    }
  }

  // The pages of a decoded frame, checked in file order.
  void hand_out(const Slot& s, std::vector<PageRef>& pages) {
    const auto where = [&s] { return frame_where(s.index, s.start); };
    for (size_t i = 0; i < s.npages; ++i) {
      const std::byte* record = s.content.data() + i * record_size;
      const uint32_t pgno = get_be32(record);
      if (pgno == 0) throw_corrupt(name, where() + " has page 0 (pages count from 1)");
      if (pgno <= last_pgno) {
        throw_corrupt(name, where() + " has page " + std::to_string(pgno) + " after page " +
                                std::to_string(last_pgno) + ": pages must ascend, each once");
      }
      if (pgno > header.db_pages) {
        throw_corrupt(name, where() + " has page " + std::to_string(pgno) + ", past the database's " +
                                std::to_string(header.db_pages) + " pages");
      }
      if (pgno == lock_pgno)
        throw_corrupt(name, where() + " stores SQLite's lock page " + std::to_string(pgno));
      last_pgno = pgno;
      pages.push_back({pgno, std::span<const std::byte>(record + k_pgno_size, header.page_size)});
    }
    page_count += s.npages;
  }

  void read_trailer() {
    std::array<std::byte, k_trailer_size> bytes{};
    read_exact(bytes, k_trailer_size - k_file_sum_size, Part::trailer);
    const std::byte* p = bytes.data();
    const std::optional<FileTrailer> decoded = decode_trailer(bytes);
    if (!decoded) throw_corrupt(name, "bad trailer magic");
    trailer = *decoded;
    if (trailer.page_count != page_count) {
      throw_corrupt(name, "the trailer counts " + std::to_string(trailer.page_count) +
                              " pages but the frames hold " + std::to_string(page_count));
    }
    if (header.kind == FileKind::snapshot) {
      const uint64_t expected = stored_page_count(header.db_pages, header.page_size);
      if (page_count != expected) {
        throw_corrupt(name, "the snapshot holds " + std::to_string(page_count) + " pages but a database of " +
                                std::to_string(header.db_pages) + " pages needs " + std::to_string(expected));
      }
    }
    const uint64_t stored = get_be64(p + k_off_file_sum);
    const uint64_t computed = XXH3_64bits_digest(&file_hash);
    if (k_check_file_sum && stored != computed) {
      throw_corrupt(name,
                    "file checksum mismatch (stored " + hex(stored) + ", computed " + hex(computed) + ")");
    }
    std::array<std::byte, 1> extra{};
    if (in.read(extra) != 0)
      throw_corrupt(name, "unexpected bytes after the trailer at byte " + std::to_string(offset));
  }
};

ReplicaReader::ReplicaReader(ByteSource& in, std::string name)
    : m_impl(std::make_unique<Impl>(in, std::move(name))) {
  Impl& s = *m_impl;
  XXH3_INITSTATE(&s.file_hash);
  XXH3_64bits_reset(&s.file_hash);
  s.read_header();
}

ReplicaReader::~ReplicaReader() = default;

const FileHeader& ReplicaReader::header() const { return m_impl->header; }

void ReplicaReader::set_decode_threads(int threads) { m_impl->threads = std::max(1, threads); }

void ReplicaReader::set_page_hashing(bool on) { m_impl->hash_pages = on; }

uint64_t ReplicaReader::frame_hash() const { return m_impl->current ? m_impl->current->hash : 0; }

bool ReplicaReader::next_frame(std::vector<PageRef>& pages) {
  Impl& s = *m_impl;
  pages.clear();
  if (s.failed) throw Failure("replica file '" + s.name + "' was read on after an error");
  if (s.done) return false;
  try {
    if (s.current) s.spare.push_back(std::move(s.current));
    s.fill();
    if (s.queue.empty()) {
      s.read_trailer();
      s.done = true;
      return false;
    }
    s.current = std::move(s.queue.front());
    s.queue.pop_front();
    if (s.current->decoded.valid()) s.current->decoded.get();
    if (s.current->error) std::rethrow_exception(s.current->error);
    s.hand_out(*s.current, pages);
    s.fill();  // the next frames decode while the caller uses this one
    return true;
  } catch (...) {
    s.failed = true;
    pages.clear();  // they may point into a half-checked frame
    throw;
  }
}

const FileTrailer& ReplicaReader::trailer() const { return m_impl->trailer; }

}  // namespace walship::format
