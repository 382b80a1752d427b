#include <doctest.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

// The tests reseal hand-made files with the same file checksum the format
// uses, so each structural check is shown to work on its own.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "lib/format/checksum.h"
#include "lib/format/replica_file.h"
#include "lib/util/endian.h"
#include "lib/util/error.h"

using namespace walship;
using namespace walship::format;

namespace {

const std::string k_name = "file:///backups/app/deltas/L0/00000000000000a1.delta";
using Bytes = std::vector<std::byte>;

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Like a b-tree page: a random head (so every page differs and a mix-up is
// caught) and a structured, compressible rest.
void fill_page(std::span<std::byte> page, uint32_t pgno, uint64_t seed) {
  uint64_t state = seed * 1000003u + pgno;
  const size_t random_bytes = std::min<size_t>(page.size() / 32, 96);
  for (size_t i = 0; i < random_bytes; ++i) page[i] = static_cast<std::byte>(splitmix(state));
  for (size_t i = random_bytes; i < page.size(); ++i)
    page[i] = static_cast<std::byte>((i / 16 + pgno) & 0x3f);
}

Bytes make_page(uint32_t page_size, uint32_t pgno, uint64_t seed = 0) {
  Bytes page(page_size);
  fill_page(page, pgno, seed);
  return page;
}

FileHeader snapshot_header(uint32_t page_size, uint32_t db_pages, uint64_t txid = 7) {
  FileHeader h;
  h.kind = FileKind::snapshot;
  h.page_size = page_size;
  h.min_txid = txid;
  h.max_txid = txid;
  h.db_pages = db_pages;
  h.commit_time_ms = 1'700'000'000'123;
  return h;
}

FileHeader delta_header(uint32_t page_size, uint32_t db_pages, uint64_t min = 0xa1, uint64_t max = 0xb2) {
  FileHeader h;
  h.kind = FileKind::delta;
  h.page_size = page_size;
  h.min_txid = min;
  h.max_txid = max;
  h.db_pages = db_pages;
  h.commit_time_ms = 1'700'000'000'456;
  h.pre_checksum = 0x1122334455667788ull;
  return h;
}

// Every page number a database of db_pages stores (all but the lock page).
std::vector<uint32_t> all_pages(uint32_t db_pages, uint32_t page_size) {
  std::vector<uint32_t> out;
  for (uint32_t pgno = 1; pgno <= db_pages; ++pgno) {
    if (pgno != lock_page(page_size)) out.push_back(pgno);
  }
  return out;
}

struct Written {
  Bytes bytes;
  uint64_t checksum = 0;
  uint64_t bytes_written = 0;
};

Written write_file(const FileHeader& header, const std::vector<uint32_t>& pgnos, uint64_t seed = 0,
                   int level = 1, uint32_t frame_pages = 0, int threads = 1) {
  MemorySink sink;
  ReplicaWriter writer(sink, header, level, frame_pages);
  writer.set_compression_threads(threads);
  DbChecksum sum;
  Bytes page(header.page_size);
  for (const uint32_t pgno : pgnos) {
    fill_page(page, pgno, seed);
    writer.add_page(pgno, page);
    sum.add(pgno, page);
  }
  writer.finish(sum.value());
  return {std::move(sink.data()), sum.value(), writer.bytes_written()};
}

struct ReadBack {
  FileHeader header;
  FileTrailer trailer;
  std::vector<uint32_t> pgnos;
  size_t frames = 0;
  size_t wrong_pages = 0;  // pages whose bytes differ from make_page(seed)
  uint64_t checksum = 0;
  uint64_t frame_hashes = 0;  // XOR of every frame_hash()
};

// `threads`: set_decode_threads; the frames' page hashes (set_page_hashing)
// go to ReadBack::frame_hashes.
ReadBack read_file(ByteSource& source, uint32_t seed = 0, int threads = 1) {
  ReplicaReader reader(source, k_name);
  reader.set_decode_threads(threads);
  reader.set_page_hashing(true);
  ReadBack out;
  out.header = reader.header();
  std::vector<PageRef> pages;
  Bytes expected(out.header.page_size);
  DbChecksum sum;
  while (reader.next_frame(pages)) {
    ++out.frames;
    for (const PageRef& page : pages) {
      out.pgnos.push_back(page.pgno);
      fill_page(expected, page.pgno, seed);
      if (page.data.size() != expected.size() ||
          !std::equal(page.data.begin(), page.data.end(), expected.begin())) {
        ++out.wrong_pages;
      }
      sum.add(page.pgno, page.data);
    }
    out.frame_hashes ^= reader.frame_hash();
  }
  CHECK_FALSE(reader.next_frame(pages));  // stays at the end
  CHECK(pages.empty());
  out.trailer = reader.trailer();
  out.checksum = sum.value();
  return out;
}

ReadBack read_file(std::span<const std::byte> bytes, uint32_t seed = 0, int threads = 1) {
  MemorySource source(bytes);
  return read_file(source, seed, threads);
}

// The message of the Failure that reading the whole file throws; "" when the
// file is accepted.
std::string read_error(std::span<const std::byte> bytes, int threads = 1) {
  try {
    MemorySource source(bytes);
    ReplicaReader reader(source, k_name);
    reader.set_decode_threads(threads);
    std::vector<PageRef> pages;
    while (reader.next_frame(pages)) {
    }
    return "";
  } catch (const Failure& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("unexpected exception type: ") + e.what();
  }
}

void expect_corrupt(std::span<const std::byte> bytes, std::string_view why) {
  const std::string message = read_error(bytes);
  INFO("message: ", message);
  CHECK(message.starts_with("corrupt replica file '" + k_name + "': "));
  CHECK(message.find(why) != std::string::npos);
}

// Recomputes the file checksum, so a test reaches the check it aims at
// rather than stopping at the checksum.
void reseal(Bytes& file) {
  put_be64(file.data() + file.size() - 8, XXH3_64bits(file.data(), file.size() - 8));
}

// Builds files piece by piece, including ones the writer refuses to make.
class RawBuilder {
 public:
  explicit RawBuilder(const FileHeader& header) : m_page_size(header.page_size) {
    const auto encoded = encode_header(header);
    m_bytes.assign(encoded.begin(), encoded.end());
  }

  struct FrameOptions {
    bool zstd_checksum = true;
    bool two_zstd_frames = false;
    int64_t npages = -1;  // override the frame header's page count
    int64_t csize = -1;   // override the frame header's compressed size
  };

  RawBuilder& frame(const std::vector<uint32_t>& pgnos, FrameOptions options) {
    Bytes content;
    for (const uint32_t pgno : pgnos) {
      const size_t at = content.size();
      content.resize(at + 4 + m_page_size);
      put_be32(content.data() + at, pgno);
      fill_page(std::span(content).subspan(at + 4, m_page_size), pgno, 0);
    }
    Bytes data;
    if (options.two_zstd_frames) {
      const size_t half = (pgnos.size() / 2) * (4 + m_page_size);
      append(data, compress(std::span(content).first(half), options.zstd_checksum));
      append(data, compress(std::span(content).subspan(half), options.zstd_checksum));
    } else {
      data = compress(content, options.zstd_checksum);
    }
    std::byte head[8];
    put_be32(head,
             options.csize >= 0 ? static_cast<uint32_t>(options.csize) : static_cast<uint32_t>(data.size()));
    put_be32(head + 4, options.npages >= 0 ? static_cast<uint32_t>(options.npages)
                                           : static_cast<uint32_t>(pgnos.size()));
    m_bytes.insert(m_bytes.end(), head, head + 8);
    append(m_bytes, data);
    m_pages += pgnos.size();
    return *this;
  }
  RawBuilder& frame(const std::vector<uint32_t>& pgnos) { return frame(pgnos, FrameOptions{}); }

  RawBuilder& raw(std::span<const std::byte> bytes) {
    append(m_bytes, bytes);
    return *this;
  }

  // The end marker, the trailer and a correct file checksum.
  Bytes finish(uint64_t post_checksum = 0, int64_t page_count = -1, std::string_view magic = "WALSHIPE") {
    Bytes out = m_bytes;
    const size_t at = out.size();
    out.resize(at + 8 + 32);
    std::byte* trailer = out.data() + at + 8;
    put_be64(trailer, post_checksum);
    put_be64(trailer + 8, page_count >= 0 ? static_cast<uint64_t>(page_count) : m_pages);
    std::memcpy(trailer + 16, magic.data(), 8);
    reseal(out);
    return out;
  }

 private:
  static void append(Bytes& to, std::span<const std::byte> from) {
    to.insert(to.end(), from.begin(), from.end());
  }

  static Bytes compress(std::span<const std::byte> content, bool checksum) {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, checksum ? 1 : 0);
    Bytes out(ZSTD_compressBound(content.size()));
    const size_t n = ZSTD_compress2(cctx, out.data(), out.size(), content.data(), content.size());
    ZSTD_freeCCtx(cctx);
    REQUIRE_FALSE(ZSTD_isError(n));
    out.resize(n);
    return out;
  }

  uint32_t m_page_size;
  Bytes m_bytes;
  uint64_t m_pages = 0;
};

// A source that hands out a few bytes per read, as sockets and pipes do.
class TrickleSource : public ByteSource {
 public:
  explicit TrickleSource(std::span<const std::byte> data) : m_data(data) {}
  uint64_t size() const override { return m_data.size(); }
  size_t read(std::span<std::byte> out) override {
    const size_t n = std::min({out.size(), m_data.size() - m_pos, size_t{1} + m_calls++ % 7});
    std::memcpy(out.data(), m_data.data() + m_pos, n);
    m_pos += n;
    return n;
  }
  void rewind() override { m_pos = 0; }

 private:
  std::span<const std::byte> m_data;
  size_t m_pos = 0;
  size_t m_calls = 0;
};

// A small file with three frames (smaller than a writer would make, which
// the format allows) so that exhaustive corruption runs fast and still
// crosses frame boundaries.
Bytes small_multi_frame_delta() {
  return RawBuilder(delta_header(512, 9)).frame({1, 2}).frame({4}).frame({8, 9}).finish(0xfeed);
}

}  // namespace

TEST_SUITE_BEGIN("format/replica_file");

TEST_CASE("the header encodes to the documented big-endian bytes") {
  const FileHeader h = delta_header(4096, 0x01020304, 0x1112131415161718ull, 0x2122232425262728ull);
  const auto bytes = encode_header(h);
  const unsigned char expected[k_header_size] = {
      'W',  'A',  'L',  'S',  'H',  'I',  'P',  'D',   // magic
      0,    0,    0,    1,                             // version
      0,    0,    0x10, 0,                             // page size
      0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,  // min
      0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,  // max
      1,    2,    3,    4,                             // db pages
      0,    0,    0,    0,                             // flags
      0,    0,    0x01, 0x8b, 0xcf, 0xe5, 0x69, 0xc8,  // commit ms
      0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  // pre_sum
      0,    0,    0,    0,    0,    0,    0,    0,     // reserved
  };
  CHECK(std::memcmp(bytes.data(), expected, k_header_size) == 0);
  CHECK(std::memcmp(encode_header(snapshot_header(512, 1)).data(), "WALSHIPS", 8) == 0);
}

TEST_CASE("decode_header reverses encode_header for snapshots and deltas") {
  for (const FileHeader& h : {snapshot_header(512, 3), snapshot_header(65536, 0xffffffffu, ~0ull),
                              delta_header(4096, 0), delta_header(1024, 77, 5, 5)}) {
    const auto bytes = encode_header(h);
    CHECK(decode_header(bytes, k_name) == h);
  }
}

TEST_CASE("decode_header needs all 64 header bytes and says the header is truncated") {
  const auto bytes = encode_header(delta_header(4096, 3));
  for (size_t n = 0; n < k_header_size; ++n) {
    CAPTURE(n);
    CHECK_THROWS_WITH_AS(decode_header(std::span(bytes).first(n), k_name),
                         doctest::Contains(("corrupt replica file '" + k_name + "': truncated").c_str()),
                         Failure);
  }
}

TEST_CASE("a snapshot round-trips at every page size from 512 to 65536, over several frames") {
  for (uint32_t page_size = 512; page_size <= 65536; page_size *= 2) {
    CAPTURE(page_size);
    const uint32_t per_frame = pages_per_frame(page_size);
    CHECK(uint64_t{per_frame} * (page_size + 4) <= k_frame_target_content);
    const uint32_t db_pages = 2 * per_frame + 7;
    const FileHeader header = snapshot_header(page_size, db_pages);
    const Written file = write_file(header, all_pages(db_pages, page_size), page_size, 3);
    CHECK(file.bytes_written == file.bytes.size());
    const ReadBack back = read_file(file.bytes, page_size);
    CHECK(back.header == header);
    CHECK(back.frames == 3);
    CHECK(back.pgnos == all_pages(db_pages, page_size));
    CHECK(back.wrong_pages == 0);
    CHECK(back.trailer == FileTrailer{file.checksum, db_pages});
    CHECK(back.checksum == file.checksum);
  }
}

TEST_CASE("compressing frames on several threads writes the very same bytes") {
  for (const uint32_t page_size : {512u, 4096u, 65536u}) {
    CAPTURE(page_size);
    const uint32_t db_pages = 5 * pages_per_frame(page_size) + 3;
    const FileHeader header = snapshot_header(page_size, db_pages);
    const Written one = write_file(header, all_pages(db_pages, page_size), 9, 3);
    for (const int threads : {2, 3, 8}) {
      CAPTURE(threads);
      const Written many = write_file(header, all_pages(db_pages, page_size), 9, 3, 0, threads);
      CHECK(many.bytes == one.bytes);
      CHECK(many.bytes_written == one.bytes_written);
    }
    // Fewer frames than threads, and small frames, too.
    CHECK(write_file(header, all_pages(db_pages, page_size), 9, 3, 1, 4).bytes ==
          write_file(header, all_pages(db_pages, page_size), 9, 3, 1, 1).bytes);
  }
}

TEST_CASE("decoding frames on several threads hands out the same pages, in order, with their hashes") {
  for (const uint32_t page_size : {512u, 4096u, 65536u}) {
    CAPTURE(page_size);
    const uint32_t db_pages = 5 * pages_per_frame(page_size) + 3;
    const FileHeader header = snapshot_header(page_size, db_pages);
    const Written file = write_file(header, all_pages(db_pages, page_size), 4, 1);
    for (const int threads : {1, 2, 3, 8}) {
      CAPTURE(threads);
      const ReadBack back = read_file(file.bytes, 4, threads);
      CHECK(back.frames == 6);
      CHECK(back.pgnos == all_pages(db_pages, page_size));
      CHECK(back.wrong_pages == 0);
      CHECK(back.checksum == file.checksum);
      CHECK(back.frame_hashes == file.checksum);
    }
  }
  // A source of short reads, and a last frame broken: every frame before it
  // is handed out first, as on one thread.
  Bytes broken = write_file(snapshot_header(512, 40), all_pages(40, 512), 0, 1, 8).bytes;
  broken[broken.size() - 60] ^= std::byte{0x10};
  for (const int threads : {1, 4}) {
    MemorySource source(broken);
    ReplicaReader reader(source, k_name);
    reader.set_decode_threads(threads);
    std::vector<PageRef> pages;
    size_t handed = 0;
    const auto read_all = [&] {
      while (reader.next_frame(pages)) handed += pages.size();
    };
    CHECK_THROWS_WITH_AS(read_all(), doctest::Contains("frame 5"), Failure);
    CHECK(handed == 32);
  }
}

TEST_CASE("set_compression_threads comes before the first page") {
  MemorySink sink;
  ReplicaWriter writer(sink, snapshot_header(4096, 2), 1);
  writer.add_page(1, make_page(4096, 1));
  CHECK_THROWS_AS(writer.set_compression_threads(2), Failure);
}

TEST_CASE("a delta with scattered pages round-trips at every page size") {
  for (uint32_t page_size = 512; page_size <= 65536; page_size *= 2) {
    CAPTURE(page_size);
    std::vector<uint32_t> pgnos;
    for (uint32_t pgno = 1; pgno < 40 * pages_per_frame(page_size) / 10; pgno += 1 + pgno % 3)
      pgnos.push_back(pgno);
    const FileHeader header = delta_header(page_size, pgnos.back() + 5);
    const Written file = write_file(header, pgnos, 42);
    const ReadBack back = read_file(file.bytes, 42);
    CHECK(back.header == header);
    CHECK(back.pgnos == pgnos);
    CHECK(back.frames == (pgnos.size() + pages_per_frame(page_size) - 1) / pages_per_frame(page_size));
    CHECK(back.wrong_pages == 0);
    CHECK(back.trailer == FileTrailer{file.checksum, pgnos.size()});
  }
}

TEST_CASE("an empty delta has no frames: header, end marker and trailer only") {
  const FileHeader header = delta_header(4096, 12);
  const Written file = write_file(header, {});
  CHECK(file.bytes.size() == k_header_size + k_frame_header_size + k_trailer_size);
  const ReadBack back = read_file(file.bytes);
  CHECK(back.header == header);
  CHECK(back.frames == 0);
  CHECK(back.pgnos.empty());
  CHECK(back.trailer == FileTrailer{0, 0});
}

TEST_CASE("a snapshot of an empty database and of a one-page database round-trip") {
  const ReadBack empty = read_file(write_file(snapshot_header(4096, 0), {}).bytes);
  CHECK(empty.frames == 0);
  CHECK(empty.trailer.page_count == 0);

  const Written one = write_file(snapshot_header(4096, 1), {1});
  const ReadBack back = read_file(one.bytes);
  CHECK(back.frames == 1);
  CHECK(back.pgnos == std::vector<uint32_t>{1});
  CHECK(back.wrong_pages == 0);
  CHECK(back.trailer == FileTrailer{one.checksum, 1});
}

TEST_CASE("a delta reaching past the lock page skips it at every page size") {
  for (uint32_t page_size = 512; page_size <= 65536; page_size *= 2) {
    CAPTURE(page_size);
    const uint32_t lock = lock_page(page_size);
    const std::vector<uint32_t> pgnos = {1, lock - 2, lock - 1, lock + 1, lock + 2};
    const FileHeader header = delta_header(page_size, lock + 2);
    const ReadBack back = read_file(write_file(header, pgnos).bytes);
    CHECK(back.pgnos == pgnos);
    CHECK(back.wrong_pages == 0);
  }
}

TEST_CASE("a snapshot of a database past 1 GiB round-trips without its lock page") {
  // 16388 pages of 64 KiB: the smallest whole snapshot that reaches past
  // byte 2^30. Mostly zero pages keep it fast.
  const uint32_t page_size = 65536;
  const uint32_t lock = lock_page(page_size);
  const uint32_t db_pages = lock + 3;
  const FileHeader header = snapshot_header(page_size, db_pages);
  MemorySink sink;
  ReplicaWriter writer(sink, header, 1);
  Bytes page(page_size);
  DbChecksum sum;
  for (uint32_t pgno = 1; pgno <= db_pages; ++pgno) {
    if (pgno == lock) {
      CHECK_THROWS_WITH_AS(writer.add_page(pgno, page), doctest::Contains("lock page"), Failure);
      continue;
    }
    put_be32(page.data(), pgno);
    writer.add_page(pgno, page);
    sum.add(pgno, page);
  }
  writer.finish(sum.value());

  MemorySource source(sink.data());
  ReplicaReader reader(source, k_name);
  std::vector<PageRef> pages;
  uint32_t expected = 1;
  uint64_t count = 0;
  bool ok = true;
  DbChecksum read_sum;
  while (reader.next_frame(pages)) {
    for (const PageRef& p : pages) {
      ok = ok && p.pgno == expected && get_be32(p.data.data()) == p.pgno;
      read_sum.add(p.pgno, p.data);
      expected = p.pgno + 1 == lock ? p.pgno + 2 : p.pgno + 1;
      ++count;
    }
  }
  CHECK(ok);
  CHECK(count == db_pages - 1);
  CHECK(expected == db_pages + 1);
  CHECK(reader.trailer() == FileTrailer{sum.value(), db_pages - 1u});
  CHECK(read_sum == sum);
}

TEST_CASE("the reader copes with a source that returns short reads") {
  const Written file = write_file(delta_header(1024, 3000), all_pages(2500, 1024), 5);
  TrickleSource source(file.bytes);
  const ReadBack back = read_file(source, 5);
  CHECK(back.pgnos == all_pages(2500, 1024));
  CHECK(back.wrong_pages == 0);
}

TEST_CASE("the reader accepts smaller frames than the writer makes") {
  const ReadBack back = read_file(small_multi_frame_delta());
  CHECK(back.frames == 3);
  CHECK(back.pgnos == std::vector<uint32_t>{1, 2, 4, 8, 9});
  CHECK(back.trailer.post_checksum == 0xfeed);
}

TEST_CASE("the writer makes smaller frames on request, but none a reader would refuse") {
  const Written file = write_file(delta_header(512, 100), {1, 5, 6, 7, 50, 99, 100}, 3, 1, 3);
  const ReadBack back = read_file(file.bytes, 3);
  CHECK(back.frames == 3);
  CHECK(back.pgnos == std::vector<uint32_t>{1, 5, 6, 7, 50, 99, 100});
  CHECK(back.wrong_pages == 0);
  MemorySink sink;
  CHECK_NOTHROW(ReplicaWriter(sink, delta_header(65536, 1), 1, 63));
  CHECK_THROWS_WITH_AS(ReplicaWriter(sink, delta_header(65536, 1), 1, 64),
                       doctest::Contains("larger than readers accept"), Failure);
}

TEST_CASE("the writer hands each frame to the sink as soon as it is full") {
  // Memory stays bounded by one frame: a multi-GiB snapshot is never held.
  const uint32_t page_size = 4096;
  MemorySink sink;
  ReplicaWriter writer(sink, snapshot_header(page_size, 10 * pages_per_frame(page_size)), 1);
  CHECK(sink.data().size() == k_header_size);
  const Bytes page = make_page(page_size, 1);
  uint32_t pgno = 1;
  for (; pgno < pages_per_frame(page_size); ++pgno) writer.add_page(pgno, page);
  CHECK(sink.data().size() == k_header_size);
  writer.add_page(pgno++, page);
  const size_t after_one_frame = sink.data().size();
  CHECK(after_one_frame > k_header_size);
  CHECK(writer.bytes_written() == after_one_frame);
  for (int frame = 0; frame < 3; ++frame) {
    for (uint32_t i = 0; i < pages_per_frame(page_size); ++i) writer.add_page(pgno++, page);
  }
  CHECK(sink.data().size() > after_one_frame);
}

TEST_CASE("the writer rejects pages out of order, repeated, of the wrong size or outside the database") {
  MemorySink sink;
  ReplicaWriter writer(sink, delta_header(4096, 100), 1);
  const Bytes page = make_page(4096, 1);
  writer.add_page(5, page);
  CHECK_THROWS_WITH_AS(writer.add_page(5, page), doctest::Contains("ascend"), Failure);
  CHECK_THROWS_WITH_AS(writer.add_page(4, page), doctest::Contains("ascend"), Failure);
  CHECK_THROWS_WITH_AS(writer.add_page(6, make_page(2048, 6)), doctest::Contains("page size"), Failure);
  CHECK_THROWS_WITH_AS(writer.add_page(7, make_page(8192, 7)), doctest::Contains("page size"), Failure);
  CHECK_THROWS_WITH_AS(writer.add_page(7, {}), doctest::Contains("page size"), Failure);
  CHECK_THROWS_WITH_AS(writer.add_page(101, page), doctest::Contains("outside the database"), Failure);
  writer.add_page(100, page);
  writer.finish(0);
  CHECK_THROWS_WITH_AS(writer.add_page(101, page), doctest::Contains("after finish()"), Failure);
  CHECK_THROWS_WITH_AS(writer.finish(0), doctest::Contains("finish() called after finish()"), Failure);
  // The rejected calls left nothing behind: the file holds pages 5 and 100.
  CHECK(read_file(sink.data()).pgnos == std::vector<uint32_t>{5, 100});
}

TEST_CASE("the writer rejects page 0 and the lock page") {
  MemorySink sink;
  ReplicaWriter writer(sink, delta_header(512, lock_page(512) + 1), 1);
  const Bytes page = make_page(512, 1);
  CHECK_THROWS_WITH_AS(writer.add_page(0, page), doctest::Contains("outside the database"), Failure);
  CHECK_THROWS_WITH_AS(writer.add_page(lock_page(512), page), doctest::Contains("lock page"), Failure);
}

TEST_CASE("the writer refuses a header no reader would accept") {
  MemorySink sink;
  FileHeader bad_size = delta_header(4096, 1);
  for (const uint32_t page_size : {0u, 256u, 1000u, 131072u}) {
    bad_size.page_size = page_size;
    CHECK_THROWS_WITH_AS(ReplicaWriter(sink, bad_size, 1), doctest::Contains("page size"), Failure);
  }
  CHECK_THROWS_AS(ReplicaWriter(sink, delta_header(4096, 1, 9, 8), 1), Failure);
  FileHeader ranged = snapshot_header(4096, 1);
  ranged.max_txid = ranged.min_txid + 1;
  CHECK_THROWS_AS(ReplicaWriter(sink, ranged, 1), Failure);
  FileHeader with_pre = snapshot_header(4096, 1);
  with_pre.pre_checksum = 1;
  CHECK_THROWS_AS(ReplicaWriter(sink, with_pre, 1), Failure);
  CHECK(sink.data().empty());
}

TEST_CASE("the writer refuses to finish a snapshot that misses pages") {
  MemorySink sink;
  ReplicaWriter writer(sink, snapshot_header(4096, 3), 1);
  writer.add_page(1, make_page(4096, 1));
  writer.add_page(3, make_page(4096, 3));
  CHECK_THROWS_WITH_AS(writer.finish(0), doctest::Contains("snapshot has 2 pages"), Failure);
}

TEST_CASE("every single-byte change to a small file is rejected with a message naming the file") {
  // The file checksum covers every byte but itself, and a change to itself
  // no longer matches: no change can slip through, whatever it hits.
  std::vector<std::byte> every_value;
  for (unsigned v = 1; v < 256; ++v) every_value.push_back(static_cast<std::byte>(v));
  std::vector<std::byte> every_bit_and_all;
  for (unsigned bit = 0; bit < 8; ++bit) every_bit_and_all.push_back(static_cast<std::byte>(1u << bit));
  every_bit_and_all.push_back(std::byte{0xff});

  struct Case {
    const char* what;
    Bytes original;
    const std::vector<std::byte>& xors;
  };
  const Case cases[] = {
      // Every possible value at every position of the two smallest files.
      {"an empty delta", write_file(delta_header(512, 4), {}).bytes, every_value},
      {"a one-frame snapshot", write_file(snapshot_header(512, 3), {1, 2, 3}).bytes, every_value},
      // Every bit flip (and every byte inverted) of files with several frames.
      {"a three-frame delta", small_multi_frame_delta(), every_bit_and_all},
      {"a writer-made three-frame snapshot",
       write_file(snapshot_header(512, 5), {1, 2, 3, 4, 5}, 0, 1, 2).bytes, every_bit_and_all},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    REQUIRE(read_error(c.original).empty());
    Bytes file = c.original;
    size_t changes = 0;
    size_t accepted = 0;
    size_t unnamed = 0;
    for (size_t i = 0; i < file.size(); ++i) {
      for (const std::byte x : c.xors) {
        file[i] = c.original[i] ^ x;
        ++changes;
        const std::string message = read_error(file);
        // Frames decoded ahead on other threads: the same first error.
        if (&c.xors == &every_bit_and_all && read_error(file, 3) != message) {
          INFO("at byte ", i, ", 3 threads: ", read_error(file, 3), "; 1 thread: ", message);
          CHECK(false);
        }
        if (message.empty()) {
          ++accepted;
          INFO("accepted a change at byte ", i, " of ", file.size());
          CHECK(false);
        } else if (message.find("replica file '" + k_name + "'") == std::string::npos) {
          ++unnamed;
          INFO("unnamed: ", message);
          CHECK(false);
        }
      }
      file[i] = c.original[i];
    }
    CAPTURE(file.size());
    CHECK(changes == file.size() * c.xors.size());
    CHECK(accepted == 0);
    CHECK(unnamed == 0);
  }
}

TEST_CASE("a file cut short anywhere is rejected as truncated") {
  const auto check_cut = [](const Bytes& file, size_t n) {
    const std::string message = read_error(std::span(file).first(n));
    if (!message.starts_with("corrupt replica file '" + k_name + "': truncated")) {
      INFO("cut at ", n, " of ", file.size(), ": ", message);
      CHECK(false);
    }
  };
  for (const Bytes& file : {small_multi_frame_delta(), write_file(snapshot_header(512, 3), {1, 2, 3}).bytes,
                            write_file(delta_header(4096, 9), {}).bytes}) {
    for (size_t n = 0; n < file.size(); ++n) check_cut(file, n);
  }
  // A writer-made file with 1 MiB frames: every cut would decompress a
  // megabyte thousands of times, so cut at a stride and around the end.
  const Bytes big = write_file(snapshot_header(65536, 20), all_pages(20, 65536)).bytes;
  REQUIRE(read_file(big).frames == 2);
  for (size_t n = 0; n < big.size(); n += 97) check_cut(big, n);
  for (size_t n = big.size() - 64; n < big.size(); ++n) check_cut(big, n);
}

TEST_CASE("a file with a wrong magic is not a replica file") {
  Bytes file = small_multi_frame_delta();
  file[7] = std::byte{'X'};
  expect_corrupt(file, "bad magic");
  const std::string sqlite_file = std::string("SQLite format 3") + std::string(100, '\0');
  expect_corrupt(as_bytes(sqlite_file), "bad magic");
}

TEST_CASE("a newer format version asks for an upgrade, not a repair") {
  Bytes file = small_multi_frame_delta();
  put_be32(file.data() + 8, 2);
  reseal(file);
  CHECK(read_error(file) ==
        "replica file '" + k_name + "' has format version 2; this walship reads version 1: upgrade walship");
  // Even a bare header of a future version gets the upgrade message.
  CHECK_THROWS_WITH_AS(decode_header(std::span(file).first(k_header_size), k_name),
                       doctest::Contains("upgrade walship"), Failure);
  put_be32(file.data() + 8, 0);
  reseal(file);
  expect_corrupt(file, "invalid format version 0");
}

TEST_CASE("header fields that break the format's rules are rejected") {
  const Bytes good = small_multi_frame_delta();
  const auto mutate = [&](auto change, std::string_view why) {
    Bytes file = good;
    change(file.data());
    reseal(file);
    expect_corrupt(file, why);
  };
  mutate([](std::byte* p) { put_be32(p + 36, 1); }, "unknown flags");
  mutate([](std::byte* p) { put_be32(p + 36, 0x80000000u); }, "unknown flags");
  mutate([](std::byte* p) { put_be64(p + 56, 1); }, "reserved");
  for (const uint32_t page_size : {0u, 256u, 1000u, 513u, 131072u, 0xffffffffu}) {
    mutate([page_size](std::byte* p) { put_be32(p + 12, page_size); }, "invalid page size");
  }
  mutate([](std::byte* p) { put_be64(p + 16, 0xb3); }, "is after max TXID");

  const Bytes snap = write_file(snapshot_header(512, 2), {1, 2}).bytes;
  Bytes ranged = snap;
  put_be64(ranged.data() + 24, 8);
  reseal(ranged);
  expect_corrupt(ranged, "snapshot spans TXIDs");
  Bytes with_pre = snap;
  put_be64(with_pre.data() + 48, 1);
  reseal(with_pre);
  expect_corrupt(with_pre, "pre-checksum");
}

TEST_CASE("a file whose checksum disagrees is rejected") {
  Bytes file = small_multi_frame_delta();
  file.back() ^= std::byte{1};
  expect_corrupt(file, "file checksum mismatch");
  // A change to the post-checksum is structurally fine: only the file
  // checksum can catch it.
  Bytes post = small_multi_frame_delta();
  post[post.size() - 32] ^= std::byte{0x80};
  expect_corrupt(post, "file checksum mismatch");
}

TEST_CASE("bytes after the trailer are rejected") {
  Bytes file = small_multi_frame_delta();
  file.push_back(std::byte{0});
  expect_corrupt(file, "after the trailer");
  Bytes twice = small_multi_frame_delta();
  const Bytes again = small_multi_frame_delta();
  twice.insert(twice.end(), again.begin(), again.end());
  expect_corrupt(twice, "after the trailer");
}

TEST_CASE("a corrupt frame length cannot make the reader allocate gigabytes") {
  const FileHeader header = delta_header(65536, 100);
  // Rejected from the frame header alone: not "truncated", which would mean
  // the reader tried to read (and first allocate) what the header claims.
  expect_corrupt(RawBuilder(header).frame({1}, {.csize = 0xffffffff}).finish(), "compressed bytes for");
  expect_corrupt(RawBuilder(header).frame({1}, {.npages = 0xffffffff}).finish(), "more than the");
  expect_corrupt(RawBuilder(header).frame({1}, {.npages = 64}).finish(), "more than the 63");
}

TEST_CASE("frames that lie about their size or pages are rejected") {
  const FileHeader header = delta_header(512, 10);
  expect_corrupt(RawBuilder(header).frame({1, 2, 3}, {.npages = 2}).finish(), "declares 1548 bytes");
  expect_corrupt(RawBuilder(header).frame({1, 2, 3}, {.npages = 4}).finish(), "declares 1548 bytes");
  expect_corrupt(RawBuilder(header).frame({1}, {.npages = 0}).finish(), "both must be non-zero");
  expect_corrupt(RawBuilder(header).frame({1}, {.csize = 0}).finish(), "both must be non-zero");
  // A shorter csize leaves the zstd frame cut; a longer one swallows the end
  // marker and the trailer, which then reads as truncated.
  Bytes cut = RawBuilder(header).frame({1, 2, 3}).finish();
  const uint32_t csize = get_be32(cut.data() + k_header_size);
  put_be32(cut.data() + k_header_size, csize - 1);
  reseal(cut);
  expect_corrupt(cut, "not exactly one zstd frame");
}

TEST_CASE("a frame must be exactly one zstd frame carrying its content checksum") {
  const FileHeader header = delta_header(512, 10);
  expect_corrupt(RawBuilder(header).frame({1, 2}, {.zstd_checksum = false}).finish(),
                 "not a checksummed zstd frame");
  expect_corrupt(RawBuilder(header).frame({1, 2, 3, 4}, {.two_zstd_frames = true}).finish(),
                 "not exactly one zstd frame");
  const Bytes garbage(40, std::byte{0x5a});
  Bytes head(8);
  put_be32(head.data(), 40);
  put_be32(head.data() + 4, 1);
  expect_corrupt(RawBuilder(header).raw(head).raw(garbage).finish(0, 1), "not a checksummed zstd frame");

  // Damage the frame's content checksum (its last 4 bytes) and reseal the
  // file: zstd itself must catch it.
  Bytes file = RawBuilder(header).frame({1, 2}).finish();
  const uint32_t csize = get_be32(file.data() + k_header_size);
  file[k_header_size + k_frame_header_size + csize - 1] ^= std::byte{1};
  reseal(file);
  expect_corrupt(file, "does not decompress");
}

TEST_CASE("pages must ascend across the file, stay inside the database and never be the lock page") {
  const FileHeader header = delta_header(512, 10);
  expect_corrupt(RawBuilder(header).frame({1, 3, 2}).finish(), "page 2 after page 3");
  expect_corrupt(RawBuilder(header).frame({1, 2}).frame({2, 3}).finish(), "page 2 after page 2");
  expect_corrupt(RawBuilder(header).frame({4}).frame({3}).finish(), "frame 2 (at byte");
  expect_corrupt(RawBuilder(header).frame({0}).finish(), "has page 0 (pages count from 1)");
  expect_corrupt(RawBuilder(header).frame({10, 11}).finish(), "page 11, past the database's 10 pages");
  const uint32_t lock = lock_page(512);
  expect_corrupt(RawBuilder(delta_header(512, lock + 1)).frame({lock - 1, lock}).finish(),
                 "lock page 2097153");
  // Through all that, the same pages in order are fine.
  CHECK(read_error(RawBuilder(delta_header(512, lock + 1)).frame({lock - 1}).frame({lock + 1}).finish())
            .empty());
}

TEST_CASE("the trailer must count the pages and carry its magic") {
  const FileHeader header = delta_header(512, 10);
  expect_corrupt(RawBuilder(header).frame({1, 2}).finish(0, 3),
                 "the trailer counts 3 pages but the frames hold 2");
  expect_corrupt(RawBuilder(header).frame({1, 2}).finish(0, -1, "WALSHIPX"), "bad trailer magic");
  expect_corrupt(RawBuilder(header).frame({1, 2}).finish(0, -1, "WALSHIPS"), "bad trailer magic");
}

TEST_CASE("a snapshot must hold every page of the database") {
  const FileHeader header = snapshot_header(512, 4);
  expect_corrupt(RawBuilder(header).frame({1, 2, 4}).finish(),
                 "holds 3 pages but a database of 4 pages needs 4");
  expect_corrupt(RawBuilder(header).finish(), "holds 0 pages");
  CHECK(read_error(RawBuilder(header).frame({1, 2}).frame({3, 4}).finish()).empty());
  // Past the lock page a snapshot holds one page fewer than the database.
  const uint32_t lock = lock_page(65536);
  const FileHeader big = snapshot_header(65536, lock + 1);
  expect_corrupt(RawBuilder(big).frame({1}).finish(), "needs 16385");
}

TEST_CASE("after an error the reader refuses to go on") {
  Bytes file = small_multi_frame_delta();
  file[file.size() - 1] ^= std::byte{1};
  MemorySource source(file);
  ReplicaReader reader(source, k_name);
  std::vector<PageRef> pages;
  const auto read_all = [&] {
    while (reader.next_frame(pages)) {
    }
  };
  CHECK_THROWS_WITH_AS(read_all(), doctest::Contains("file checksum mismatch"), Failure);
  CHECK(pages.empty());
  CHECK_THROWS_WITH_AS(reader.next_frame(pages), doctest::Contains("read on after an error"), Failure);
}

TEST_CASE("after its sink fails, the writer refuses more pages") {
  // A caller that swallowed the error must not make the writer overrun the
  // full frame it could not hand out.
  class FailingSink : public ByteSink {
   public:
    void write(std::span<const std::byte> data) override {
      if (++m_writes == 2) throw Failure("unable to write 'x': disk full");
      m_bytes += data.size();
    }

   private:
    int m_writes = 0;
    size_t m_bytes = 0;
  };
  FailingSink sink;
  ReplicaWriter writer(sink, delta_header(512, 100), 1, 2);
  const Bytes page = make_page(512, 1);
  writer.add_page(1, page);
  CHECK_THROWS_WITH_AS(writer.add_page(2, page), doctest::Contains("disk full"), Failure);
  CHECK_THROWS_WITH_AS(writer.add_page(3, page), doctest::Contains("after a failed write"), Failure);
  CHECK_THROWS_WITH_AS(writer.finish(0), doctest::Contains("after a failed write"), Failure);
}

TEST_CASE("trailer() is the trailer once next_frame() returned false") {
  const Written file = write_file(delta_header(4096, 50), {3, 9, 27}, 0);
  MemorySource source(file.bytes);
  ReplicaReader reader(source, k_name);
  std::vector<PageRef> pages;
  CHECK(reader.next_frame(pages));
  CHECK(pages.size() == 3);
  CHECK_FALSE(reader.next_frame(pages));
  CHECK(reader.trailer() == FileTrailer{file.checksum, 3});
  CHECK_FALSE(reader.next_frame(pages));
}

TEST_CASE("decode_trailer reads a file's last 32 bytes, as one ranged GET fetches them") {
  const Written file = write_file(delta_header(4096, 50), {3, 9, 27}, 0);
  const std::span<const std::byte> last = std::span<const std::byte>(file.bytes).last(k_trailer_size);
  CHECK(decode_trailer(last) == FileTrailer{file.checksum, 3});
  // Not a trailer: the wrong size, or no magic where it belongs.
  CHECK_FALSE(decode_trailer(std::span<const std::byte>(file.bytes).last(k_trailer_size + 1)));
  CHECK_FALSE(decode_trailer(last.first(k_trailer_size - 1)));
  Bytes bad(last.begin(), last.end());
  bad[16] = std::byte{'X'};
  CHECK_FALSE(decode_trailer(bad));
  // The file checksum is not decode_trailer's to check: it covers the whole file.
  Bytes other_sum(last.begin(), last.end());
  other_sum.back() ^= std::byte{1};
  CHECK(decode_trailer(other_sum) == FileTrailer{file.checksum, 3});
}

TEST_SUITE_END();
