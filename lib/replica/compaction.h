// Compaction (DESIGN.md, "Replica layout"): the L0 deltas committed in one
// UTC minute become one L1 file, the L1 files of an hour one L2 file, the L2
// files of a day one L3 file (spans configurable), so a restore after days
// of writes downloads a handful of files. Inputs are never deleted here;
// retention (prune) decides what goes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/replica/replica_listing.h"
#include "lib/storage/storage.h"

namespace walship {

struct ReplicatorOptions;

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
// that breaks the chain.
void merge_deltas(Storage& storage, const std::vector<DeltaRecord>& inputs, const std::string& scratch_dir,
                  ByteSink& out, int zstd_level);

// Tracks, per level, the deltas no file of the next level covers yet, and
// writes the compacted files when their span is over.
class Compactor {
 public:
  // Learns the uncompacted deltas of each level from a listing.
  void load(const ReplicaListing& listing, HeaderCache& headers);
  // Records a freshly shipped L0 delta.
  void add(const DeltaRecord& delta) { m_pending[0].push_back(delta); }
  // Writes every compacted file that is due; returns when the next is due.
  std::optional<int64_t> run(Storage& storage, const ReplicatorOptions& options, int64_t now,
                             const std::string& scratch_dir);
  // Compacted files written so far (for /metrics).
  uint64_t written() const { return m_written; }

 private:
  std::vector<DeltaRecord> m_pending[3];  // m_pending[l]: level-l deltas not yet in level l + 1
  uint64_t m_written = 0;
};

}  // namespace walship
