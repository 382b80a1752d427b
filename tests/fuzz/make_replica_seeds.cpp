// Writes the valid-* seed files of corpus/replica_reader/ with the real
// writer. Rerun it (target walship-fuzz-make-replica-seeds) only when the
// format version changes: the checked-in seeds are also the proof that this
// build still reads files an older one wrote.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "lib/format/checksum.h"
#include "lib/format/replica_file.h"
#include "lib/util/byte_stream.h"

using namespace walship;
using namespace walship::format;

namespace {

// Small, varied, compressible pages: the fuzzer mutates what it is given,
// so seeds stay a few hundred bytes.
std::vector<std::byte> page_of(uint32_t page_size, uint32_t pgno) {
  std::vector<std::byte> page(page_size);
  for (uint32_t i = 0; i < page_size; ++i)
    page[i] = static_cast<std::byte>(i < 8 ? pgno * 37 + i : (i / 64) & 7);
  return page;
}

void write_seed(const std::string& dir, const std::string& name, const FileHeader& header,
                const std::vector<uint32_t>& pgnos, uint32_t frame_pages) {
  MemorySink sink;
  ReplicaWriter writer(sink, header, 19, frame_pages);
  DbChecksum sum(header.pre_checksum);
  for (const uint32_t pgno : pgnos) {
    const std::vector<std::byte> page = page_of(header.page_size, pgno);
    writer.add_page(pgno, page);
    sum.add(pgno, page);
  }
  writer.finish(sum.value());
  const std::string path = dir + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(sink.data().data()),
            static_cast<std::streamsize>(sink.data().size()));
  if (!out) {
    std::fprintf(stderr, "unable to write '%s'\n", path.c_str());
    std::exit(1);
  }
  std::printf("%s: %zu bytes\n", path.c_str(), sink.data().size());
}

FileHeader header_of(FileKind kind, uint32_t page_size, uint64_t min, uint64_t max, uint32_t db_pages) {
  FileHeader h;
  h.kind = kind;
  h.page_size = page_size;
  h.min_txid = min;
  h.max_txid = max;
  h.db_pages = db_pages;
  h.commit_time_ms = 1'700'000'000'000;
  h.pre_checksum = kind == FileKind::delta ? 0x0123456789abcdefull : 0;
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const uint32_t lock = lock_page(512);
  write_seed(dir, "valid-delta-empty", header_of(FileKind::delta, 4096, 5, 9, 10), {}, 0);
  write_seed(dir, "valid-snapshot-512-one-frame", header_of(FileKind::snapshot, 512, 1, 1, 3), {1, 2, 3}, 0);
  write_seed(dir, "valid-snapshot-512-three-frames", header_of(FileKind::snapshot, 512, 4, 4, 5),
             {1, 2, 3, 4, 5}, 2);
  write_seed(dir, "valid-delta-1024-scattered", header_of(FileKind::delta, 1024, 2, 2, 40), {3, 17, 40}, 2);
  write_seed(dir, "valid-delta-512-lock-page", header_of(FileKind::delta, 512, 7, 8, lock + 1),
             {lock - 1, lock + 1}, 1);
  write_seed(dir, "valid-snapshot-65536-one-page", header_of(FileKind::snapshot, 65536, 3, 3, 1), {1}, 0);
  return 0;
}
