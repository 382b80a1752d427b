// Compaction (DESIGN.md, "Replica layout"): the L0 deltas committed in one
// UTC minute become one L1 file, the L1 files of an hour one L2 file, the L2
// files of a day one L3 file (spans configurable), so a restore after days
// of writes downloads a handful of files. Inputs are never deleted here;
// retention (prune) decides what goes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lib/replica/delta_cache.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/replicator_options.h"
#include "lib/storage/storage.h"

namespace walship {

struct DeltaRecord {
  std::string key;
  int level = 0;
  uint64_t min_txid = 0;
  uint64_t max_txid = 0;
  uint64_t commit_ms = 0;
};

// A run of deltas that one compacted file replaces: consecutive, chained
// TXIDs in the same span bucket.
struct CompactionRun {
  size_t first = 0;  // indices into the input list
  size_t count = 0;
};

// Pure: groups `deltas` (ascending TXID) into runs of contiguous TXIDs whose
// commit times fall in the same `span_ms` bucket, keeping only runs whose
// bucket ended before `now`. Returns them in order.
std::vector<CompactionRun> plan_compaction(const std::vector<DeltaRecord>& deltas, int64_t span_ms,
                                           int64_t now);

// Merges `inputs` (a chain: each one's pre-checksum is the previous one's
// post-checksum) into one delta file written to `out`: each page's newest
// version, the last input's size, commit time and post-checksum. Uses a
// sparse scratch file in `scratch_dir`. Throws Failure naming the object
// that breaks the chain. `stop`, when given and set, makes it return false
// between inputs (nothing complete written); true when merged.
// Inputs kept in `cache`, when given, are read from there. `merged`, when
// given, receives the header written.
bool merge_deltas(Storage& storage, const std::vector<DeltaRecord>& inputs, const std::string& scratch_dir,
                  ByteSink& out, int zstd_level, const std::atomic<bool>* stop = nullptr,
                  const DeltaCache* cache = nullptr, format::FileHeader* merged_header = nullptr);

// Tracks, per level, the deltas no file of the next level covers yet, and
// writes the compacted files when their span is over.
//
// The replicator ships while a compaction runs in the background (see
// Replicator::maintain): reading back a minute of deltas from a store that
// answers in 50 ms takes seconds, and a node lost meanwhile would lose every
// commit of them. So add() and load() may come from the replicator's step
// while run() works on another thread: the pending lists are guarded, and
// run() merges from copies of them.
class Compactor {
 public:
  // Keeps local copies of what it will merge (DeltaCache) in `dir`, for
  // compaction to `levels`; without it, every input is read from the store.
  void cache_in(const std::string& dir, const std::vector<CompactionLevel>& levels,
                uint64_t limit = DeltaCache::k_default_limit);
  // Records the header of each file it writes in `headers` (the
  // replicator's, so that retention need not read them back).
  void record_headers_in(HeaderCache& headers) { m_headers = &headers; }
  // Learns the uncompacted deltas of each level from a listing.
  void load(const ReplicaListing& listing, HeaderCache& headers);
  // Records a freshly shipped L0 delta; with `fd`, its bytes (at the start
  // of fd, `size` of them) are kept for the merge.
  void add(const DeltaRecord& delta, int fd = -1, uint64_t size = 0);
  // Writes every compacted file that is due. Throws StorageError (the runs
  // not written are tried again next time). `stop`, when set, ends it
  // between input objects, before writing anything incomplete.
  void run(Storage& storage, const ReplicatorOptions& options, int64_t now, const std::string& scratch_dir,
           const std::atomic<bool>* stop = nullptr);
  // When the next compacted file is due (its span is over), if any.
  std::optional<int64_t> due(const ReplicatorOptions& options) const;
  // Compacted files written so far (for /metrics).
  uint64_t written() const { return m_written; }

 private:
  // Keeps `size` bytes of `fd` as the L0 delta `record`, in the bucket of
  // the L1 file that will cover it.
  void keep(const DeltaRecord& record, int fd, uint64_t size);
  // One compacted file: written (or found written by an earlier run), not
  // written because its inputs do not chain (logged; restore still reads
  // them), or stopped before anything was written.
  enum class Outcome { written, broken_chain, stopped };
  Outcome compact(Storage& storage, const std::vector<DeltaRecord>& inputs, const DeltaRecord& out,
                  const ReplicatorOptions& options, const std::string& scratch_dir,
                  const std::atomic<bool>* stop);

  mutable std::mutex m_mutex;             // guards m_pending and m_epoch
  std::vector<DeltaRecord> m_pending[3];  // m_pending[l]: level-l deltas not yet in level l + 1
  uint64_t m_epoch = 0;                   // bumped by load(): a run's results are for another listing
  std::atomic<uint64_t> m_written{0};
  std::vector<CompactionLevel> m_levels;  // what cache_in() was given
  std::unique_ptr<DeltaCache> m_cache;
  HeaderCache* m_headers = nullptr;
};

}  // namespace walship
