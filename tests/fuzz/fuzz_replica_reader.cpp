// Feeds arbitrary bytes to ReplicaReader. Beyond "no crash", it checks what a
// restore relies on: an accepted file hands out well-formed pages in order,
// its counts agree, and writing those pages again reads back the same; and
// frames decoded ahead on three threads come to the same pages, page hashes
// and first error as on one.
#include <cstdlib>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/format/checksum.h"
#include "lib/format/replica_file.h"
#include "lib/util/error.h"
#include "tests/fuzz/fuzz_target.h"

using namespace walship;
using namespace walship::format;

namespace {

constexpr std::string_view k_name = "fuzz-input";

struct Decoded {
  FileHeader header;
  FileTrailer trailer;
  std::vector<std::pair<uint32_t, std::vector<std::byte>>> pages;
  uint64_t frame_hashes = 0;  // XOR of the reader's frame_hash()
  bool operator==(const Decoded&) const = default;
};

// Reads a whole file, aborting (a finding) if the reader hands out something
// that breaks the format's promises. Throws whatever the reader throws.
Decoded decode(std::span<const std::byte> bytes, int threads = 1) {
  MemorySource source(bytes);
  ReplicaReader reader(source, std::string(k_name));
  reader.set_decode_threads(threads);
  reader.set_page_hashing(true);
  Decoded out;
  out.header = reader.header();
  const uint32_t lock = lock_page(out.header.page_size);
  std::vector<PageRef> frame;
  uint32_t last = 0;
  while (reader.next_frame(frame)) {
    if (frame.empty()) std::abort();
    for (const PageRef& page : frame) {
      if (page.data.size() != out.header.page_size || page.pgno <= last || page.pgno > out.header.db_pages ||
          page.pgno == lock) {
        std::abort();
      }
      last = page.pgno;
      out.pages.emplace_back(page.pgno, std::vector<std::byte>(page.data.begin(), page.data.end()));
    }
    out.frame_hashes ^= reader.frame_hash();
  }
  out.trailer = reader.trailer();
  if (out.trailer.page_count != out.pages.size()) std::abort();
  if (out.header.kind == FileKind::snapshot &&
      out.pages.size() != stored_page_count(out.header.db_pages, out.header.page_size)) {
    std::abort();
  }
  return out;
}

// The outcome of decode(): what it read, or the error it threw.
std::pair<Decoded, std::string> outcome(std::span<const std::byte> bytes, int threads) {
  try {
    return {decode(bytes, threads), ""};
  } catch (const Error& e) {
    return {Decoded{}, e.what()};
  }
}

}  // namespace

bool fuzz_accepts(const uint8_t* data, size_t size, std::string* why) {
  const auto input = std::as_bytes(std::span(data, size));
  auto [first, error] = outcome(input, 1);
  if (outcome(input, 3) != std::pair(first, error)) std::abort();
  if (!error.empty()) {
    // Every rejection must say which object is bad.
    if (error.find("'" + std::string(k_name) + "'") == std::string::npos) std::abort();
    if (why) *why = error;
    return false;
  }
  // The frames' hashes are those of the pages handed out.
  uint64_t hashes = 0;
  for (const auto& [pgno, page] : first.pages) hashes ^= page_hash(pgno, page);
  if (hashes != first.frame_hashes) std::abort();
  // Accepted: the writer must reproduce an equivalent file.
  MemorySink sink;
  ReplicaWriter writer(sink, first.header, 1);
  for (const auto& [pgno, bytes] : first.pages) writer.add_page(pgno, bytes);
  writer.finish(first.trailer.post_checksum);
  const Decoded second = decode(sink.data());
  if (second.header != first.header || second.trailer != first.trailer || second.pages != first.pages)
    std::abort();
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_accepts(data, size);
  return 0;
}
