#include <doctest.h>

#include <vector>

#include "backends/memory/memory_storage.h"
#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/compaction.h"
#include "lib/replica/replicate.h"
#include "tests/unit/support.h"

using namespace walship;

namespace {

DeltaRecord delta(uint64_t min, uint64_t max, uint64_t commit_ms) {
  return {format::l0_delta_key(min), 0, min, max, commit_ms};
}

std::vector<std::pair<size_t, size_t>> runs_of(const std::vector<DeltaRecord>& deltas, int64_t span,
                                               int64_t now) {
  std::vector<std::pair<size_t, size_t>> out;
  for (const CompactionRun& r : plan_compaction(deltas, span, now)) out.emplace_back(r.first, r.count);
  return out;
}

// A delta of 512-byte pages: each page is filled with `fill`.
void put_delta(MemoryStorage& storage, uint64_t txid, uint32_t db_pages,
               std::vector<std::pair<uint32_t, int>> pages, uint64_t pre, uint64_t post, uint64_t commit_ms) {
  MemorySink sink;
  format::FileHeader header{format::FileKind::delta, 512, txid, txid, db_pages, commit_ms, pre};
  format::ReplicaWriter writer(sink, header, 1);
  for (const auto& [pgno, fill] : pages) {
    std::vector<std::byte> page(512, static_cast<std::byte>(fill));
    writer.add_page(pgno, page);
  }
  writer.finish(post);
  MemorySource source(sink.data());
  storage.put(format::l0_delta_key(txid), source);
}

}  // namespace

TEST_CASE("compaction groups contiguous deltas by span bucket, once the bucket is over") {
  std::vector<DeltaRecord> deltas = {delta(1, 1, 1000), delta(2, 2, 59'000)};
  CHECK(runs_of(deltas, 60'000, 59'500).empty());  // minute 0 is still going
  CHECK(runs_of(deltas, 60'000, 60'000) == std::vector<std::pair<size_t, size_t>>{{0, 2}});
  // Minute 1 holds 3..5, then a gap (TXID 6 is a snapshot) ends that run early.
  deltas.push_back(delta(3, 3, 60'000));
  deltas.push_back(delta(4, 5, 61'000));
  deltas.push_back(delta(7, 7, 62'000));
  CHECK(runs_of(deltas, 60'000, 62'000) == std::vector<std::pair<size_t, size_t>>{{0, 2}, {2, 2}});
  deltas.push_back(delta(8, 8, 125'000));
  CHECK(runs_of(deltas, 60'000, 125'000) == std::vector<std::pair<size_t, size_t>>{{0, 2}, {2, 2}, {4, 1}});
  CHECK(runs_of(deltas, 60'000, 200'000) ==
        std::vector<std::pair<size_t, size_t>>{{0, 2}, {2, 2}, {4, 1}, {5, 1}});
  CHECK(runs_of({}, 60'000, 200'000).empty());
}

TEST_CASE("merged deltas keep each page's newest version, the last size and both checksums") {
  MemoryStorage storage;
  put_delta(storage, 5, 4, {{1, 1}, {3, 1}, {4, 1}}, 100, 200, 1000);
  put_delta(storage, 6, 4, {{3, 2}}, 200, 300, 2000);
  put_delta(storage, 7, 2, {{1, 3}}, 300, 400, 3000);  // shrinks: pages 3 and 4 go
  const std::vector<DeltaRecord> inputs = {delta(5, 5, 1000), delta(6, 6, 2000), delta(7, 7, 3000)};
  MemorySink out;
  merge_deltas(storage, inputs, "/tmp", out, 3);

  MemorySource source(out.data());
  format::ReplicaReader reader(source, "merged");
  CHECK(reader.header().min_txid == 5);
  CHECK(reader.header().max_txid == 7);
  CHECK(reader.header().db_pages == 2);
  CHECK(reader.header().commit_time_ms == 3000);
  CHECK(reader.header().pre_checksum == 100);
  std::vector<format::PageRef> frame;
  std::vector<std::pair<uint32_t, int>> pages;
  while (reader.next_frame(frame)) {
    for (const auto& p : frame) pages.emplace_back(p.pgno, static_cast<int>(p.data[0]));
  }
  CHECK(pages == std::vector<std::pair<uint32_t, int>>{{1, 3}});
  CHECK(reader.trailer().post_checksum == 400);
}

TEST_CASE("a delta that does not continue the chain is not merged") {
  MemoryStorage storage;
  put_delta(storage, 5, 1, {{1, 1}}, 100, 200, 1000);
  put_delta(storage, 6, 1, {{1, 2}}, 999, 300, 2000);
  MemorySink out;
  CHECK_THROWS_WITH(merge_deltas(storage, {delta(5, 5, 1000), delta(6, 6, 2000)}, "/tmp", out, 3),
                    doctest::Contains("does not continue the chain"));
}

TEST_CASE("a span whose deltas do not chain gets no file, and the next level is built without it") {
  MemoryStorage storage;
  put_delta(storage, 1, 1, {{1, 1}}, 100, 200, 1'000);
  put_delta(storage, 2, 1, {{1, 2}}, 999, 300, 2'000);  // does not continue 1
  put_delta(storage, 3, 1, {{1, 3}}, 300, 400, 61'000);
  put_delta(storage, 4, 1, {{1, 4}}, 400, 500, 62'000);
  ReplicatorOptions options;
  options.compaction = {{1, 60'000}, {2, 3'600'000}};
  Compactor compactor;
  for (const DeltaRecord& d :
       {delta(1, 1, 1'000), delta(2, 2, 2'000), delta(3, 3, 61'000), delta(4, 4, 62'000)})
    compactor.add(d);
  compactor.run(storage, options, 2 * 3'600'000, "/tmp");
  CHECK(storage.list("deltas/L1/") == std::vector<ObjectInfo>{storage.list(format::delta_key(1, 3, 4))});
  // The L2 file of the hour is the one L1 file that exists, not a merge
  // that names the missing one.
  CHECK(storage.list("deltas/L2/").size() == 1);
  CHECK(storage.list(format::delta_key(2, 3, 4)).size() == 1);
}

TEST_CASE("--exec command lines split like a shell's words") {
  CHECK(split_command("myapp serve --port 80") == std::vector<std::string>{"myapp", "serve", "--port", "80"});
  CHECK(split_command("  a  'b c'  \"d \\\"e\\\"\" f\\ g ") ==
        std::vector<std::string>{"a", "b c", "d \"e\"", "f g"});
  CHECK(split_command("x ''") == std::vector<std::string>{"x", ""});
  CHECK_THROWS_WITH(split_command("a 'b"), "invalid --exec command 'a 'b': unterminated ' quote");
  CHECK_THROWS_AS(split_command("   "), UsageError);
}

TEST_CASE("a directory's databases go under the replica prefix by file name") {
  CHECK(join_replica_url("/backups", "a.db") == "/backups/a.db");
  CHECK(join_replica_url("file:///backups/", "a b.db") == "file:///backups/a%20b.db");
  CHECK(join_replica_url("s3://bucket/p?region=x", "t1.db") == "s3://bucket/p/t1.db?region=x");
}
