#include "lib/replica/compaction.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/replicator_options.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"

namespace walship {

namespace {

int64_t bucket_of(uint64_t commit_ms, int64_t span_ms) { return static_cast<int64_t>(commit_ms) / span_ms; }

// A span's last delta may still be uploading when the span ends (it is
// stamped when staged, recorded once uploaded), and compaction runs beside
// the steps: a span counts as over by the clock only this much after its
// end. A later delta already recorded proves it sooner (uploads go in TXID
// order). Without it, an upload in flight split a span's file in two.
constexpr int64_t k_late_delta_ms = 10'000;

void reset_fd(int fd, const std::string& name) {
  if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
    throw Failure("unable to reset the scratch file for " + name + ": " + std::strerror(errno));
  }
}

}  // namespace

std::vector<CompactionRun> plan_compaction(const std::vector<DeltaRecord>& deltas, int64_t span_ms,
                                           int64_t now) {
  std::vector<CompactionRun> runs;
  const int64_t current = now / span_ms;
  size_t i = 0;
  while (i < deltas.size()) {
    size_t j = i + 1;
    const int64_t bucket = bucket_of(deltas[i].commit_ms, span_ms);
    while (j < deltas.size() && bucket_of(deltas[j].commit_ms, span_ms) == bucket &&
           deltas[j].min_txid == deltas[j - 1].max_txid + 1) {
      ++j;
    }
    // A run is over when its bucket is, or when a later delta already belongs
    // elsewhere (a gap in the TXIDs, a clock that went backwards).
    if (bucket < current || j < deltas.size()) runs.push_back({i, j - i});
    i = j;
  }
  return runs;
}

bool merge_deltas(Storage& storage, const std::vector<DeltaRecord>& inputs, const std::string& scratch_dir,
                  ByteSink& out, int zstd_level, const std::atomic<bool>* stop, const DeltaCache* cache,
                  format::FileHeader* merged_header) {
  UniqueFd download = anonymous_file(scratch_dir);
  UniqueFd pages = anonymous_file(scratch_dir);
  std::vector<bool> touched;
  format::FileHeader merged;
  uint64_t post = 0;
  std::vector<format::PageRef> frame;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (stop && *stop) return false;
    const std::string name = storage.url() + "/" + inputs[i].key;
    reset_fd(download.get(), name);
    FdSink sink(download.get(), name);
    const bool kept = cache && cache->read(inputs[i].key, sink);
    if (!kept) {
      reset_fd(download.get(), name);  // a copy that failed half way
      if (!storage.get(inputs[i].key, sink)) {
        throw Failure("replica object '" + name +
                      "' disappeared while compacting it: is prune running too eagerly?");
      }
    }
    const off_t size = ::lseek(download.get(), 0, SEEK_CUR);
    FdSource source(download.get(), static_cast<uint64_t>(size), name);
    format::ReplicaReader reader(source, name);
    const format::FileHeader& header = reader.header();
    if (i == 0) {
      merged = header;
    } else if (header.min_txid != merged.max_txid + 1 || header.pre_checksum != post ||
               header.page_size != merged.page_size) {
      throw Failure("replica object '" + name + "' does not continue the chain of the deltas before it");
    }
    merged.max_txid = header.max_txid;
    merged.db_pages = header.db_pages;
    merged.commit_time_ms = header.commit_time_ms;
    while (reader.next_frame(frame)) {
      for (const format::PageRef& page : frame) {
        if (touched.size() < page.pgno + size_t{1}) touched.resize(page.pgno + size_t{1}, false);
        touched[page.pgno] = true;
        pwrite_all(pages.get(), page.data, uint64_t{page.pgno - 1} * merged.page_size, "compaction scratch");
      }
    }
    post = reader.trailer().post_checksum;
  }
  if (merged_header) *merged_header = merged;
  format::ReplicaWriter writer(out, merged, zstd_level);
  std::vector<std::byte> page(merged.page_size);
  for (uint32_t pgno = 1; pgno < touched.size() && pgno <= merged.db_pages; ++pgno) {
    if (!touched[pgno]) continue;
    pread_full(pages.get(), page, uint64_t{pgno - 1} * merged.page_size, "compaction scratch");
    writer.add_page(pgno, page);
  }
  writer.finish(post);
  return true;
}

void Compactor::load(const ReplicaListing& listing, HeaderCache& headers) {
  // covered[l]: the highest TXID any level >= l reaches. A delta is pending
  // only if no file ABOVE its level covers it: once prune has deleted the L1
  // files an L2 or L3 replaced, the L0 files under them are still covered.
  uint64_t covered[4] = {0, 0, 0, 0};
  for (const DeltaEntry& d : listing.deltas) {
    if (d.level >= 1 && d.level <= 3) covered[d.level] = std::max(covered[d.level], d.max_txid);
  }
  covered[2] = std::max(covered[2], covered[3]);
  covered[1] = std::max(covered[1], covered[2]);
  std::vector<std::string> keys;
  for (const DeltaEntry& d : listing.deltas) {
    if (d.level <= 2 && d.min_txid > covered[d.level + 1]) keys.push_back(d.key);
  }
  headers.prefetch(keys, 8);
  std::vector<DeltaRecord> loaded[3];
  for (const DeltaEntry& d : listing.deltas) {
    if (d.level > 2 || d.min_txid <= covered[d.level + 1]) continue;
    const format::FileHeader& header = headers.get(d.key);
    loaded[d.level].push_back({d.key, d.level, header.min_txid, header.max_txid, header.commit_time_ms});
  }
  for (auto& pending : loaded) {
    std::sort(pending.begin(), pending.end(),
              [](const DeltaRecord& a, const DeltaRecord& b) { return a.min_txid < b.min_txid; });
  }
  std::lock_guard lock(m_mutex);
  // The deltas shipped after the listing was taken (the steps go on while
  // a maintenance run reloads) stay pending.
  uint64_t listed_to = covered[1];
  if (!loaded[0].empty()) listed_to = std::max(listed_to, loaded[0].back().max_txid);
  for (const DeltaRecord& d : m_pending[0]) {
    if (d.min_txid > listed_to) loaded[0].push_back(d);
  }
  if (m_cache) {
    std::set<std::string> keys_left;
    for (const auto& pending : loaded) {
      for (const DeltaRecord& d : pending) keys_left.insert(d.key);
    }
    m_cache->retain(keys_left);
  }
  for (int l = 0; l < 3; ++l) m_pending[l] = std::move(loaded[l]);
  ++m_epoch;
}

void Compactor::cache_in(const std::string& dir, const std::vector<CompactionLevel>& levels, uint64_t limit) {
  m_levels = levels;
  m_cache = std::make_unique<DeltaCache>(dir, limit);
}

void Compactor::add(const DeltaRecord& delta, int fd, uint64_t size) {
  std::lock_guard lock(m_mutex);  // a load() keeps both or neither
  if (fd >= 0) keep(delta, fd, size);
  m_pending[0].push_back(delta);
}

// Only L0 deltas: they are nearly all of what compaction reads (60 of them
// for each L1 file at a commit a second), and their file of the minute is
// closed once its L1 is written, so an idle database keeps no descriptor.
void Compactor::keep(const DeltaRecord& record, int fd, uint64_t size) {
  if (!m_cache || record.level != 0) return;
  for (const CompactionLevel& next : m_levels) {
    if (next.level == 1) {
      m_cache->keep(record.key, record.level, bucket_of(record.commit_ms, next.span_ms), fd, size);
      return;
    }
  }
}

std::optional<int64_t> Compactor::due(const ReplicatorOptions& options) const {
  std::lock_guard lock(m_mutex);
  std::optional<int64_t> next;
  for (const CompactionLevel& level : options.compaction) {
    if (level.level < 1 || level.level > 3 || m_pending[level.level - 1].empty()) continue;
    const std::vector<DeltaRecord>& pending = m_pending[level.level - 1];
    const int64_t first = bucket_of(pending.front().commit_ms, level.span_ms);
    const bool later_recorded = bucket_of(pending.back().commit_ms, level.span_ms) != first;
    const int64_t due = (first + 1) * level.span_ms + (later_recorded ? 0 : k_late_delta_ms);
    next = next ? std::min(*next, due) : due;
  }
  return next;
}

// Each level's runs are planned on a copy of its pending list and merged
// without the lock; then the runs done leave the list (a prefix of it: only
// run() takes from the front, add() appends) unless load() replaced it
// meanwhile, and their files join the next level's.
void Compactor::run(Storage& storage, const ReplicatorOptions& options, int64_t now,
                    const std::string& scratch_dir, const std::atomic<bool>* stop) {
  for (const CompactionLevel& level : options.compaction) {
    if (level.level < 1 || level.level > 3) continue;
    std::vector<DeltaRecord> source;
    uint64_t epoch = 0;
    {
      std::lock_guard lock(m_mutex);
      source = m_pending[level.level - 1];
      epoch = m_epoch;
    }
    size_t consumed = 0;
    std::vector<DeltaRecord> written;
    const auto settle = [&] {
      std::lock_guard lock(m_mutex);
      if (m_epoch != epoch) return;
      std::vector<DeltaRecord>& pending = m_pending[level.level - 1];
      pending.erase(pending.begin(), pending.begin() + static_cast<ptrdiff_t>(consumed));
      if (level.level <= 2) {
        m_pending[level.level].insert(m_pending[level.level].end(), written.begin(), written.end());
      }
    };
    try {
      for (const CompactionRun& run : plan_compaction(source, level.span_ms, now - k_late_delta_ms)) {
        const std::vector<DeltaRecord> inputs(source.begin() + static_cast<ptrdiff_t>(run.first),
                                              source.begin() + static_cast<ptrdiff_t>(run.first + run.count));
        DeltaRecord out{format::delta_key(level.level, inputs.front().min_txid, inputs.back().max_txid),
                        level.level, inputs.front().min_txid, inputs.back().max_txid,
                        inputs.back().commit_ms};
        const Outcome outcome = compact(storage, inputs, out, options, scratch_dir, stop);
        if (outcome == Outcome::stopped) {
          settle();
          return;
        }
        consumed = run.first + run.count;
        // A file not written must not become the next level's input.
        if (outcome == Outcome::written) written.push_back(out);
      }
    } catch (...) {
      settle();
      throw;
    }
    settle();
  }
}

Compactor::Outcome Compactor::compact(Storage& storage, const std::vector<DeltaRecord>& inputs,
                                      const DeltaRecord& out, const ReplicatorOptions& options,
                                      const std::string& scratch_dir, const std::atomic<bool>* stop) {
  Outcome outcome = Outcome::written;
  try {
    UniqueFd spool = anonymous_file(scratch_dir);
    FdSink sink(spool.get(), "compaction spool");
    format::FileHeader header;
    if (!merge_deltas(storage, inputs, scratch_dir, sink, options.snapshot_zstd_level, stop, m_cache.get(),
                      &header) ||
        (stop && *stop))
      return Outcome::stopped;
    const off_t size = ::lseek(spool.get(), 0, SEEK_CUR);
    FdSource file(spool.get(), static_cast<uint64_t>(size), "compaction spool");
    if (storage.put_if_absent(out.key, file)) ++m_written;  // false: an earlier run wrote it
    if (m_headers) m_headers->add(out.key, header);
    if (log_enabled(LogLevel::debug)) {
      log(LogLevel::debug, "compacted",
          {{"replica", storage.url()}, {"key", out.key}, {"inputs", inputs.size()}, {"bytes", size}});
    }
  } catch (const StorageError&) {
    throw;
  } catch (const Error& e) {
    log(LogLevel::error, "unable to compact; leaving the deltas as they are",
        {{"replica", storage.url()}, {"key", out.key}, {"error", e.what()}});
    outcome = Outcome::broken_chain;
  }
  if (m_cache) {
    for (const DeltaRecord& input : inputs) m_cache->drop(input.key);
  }
  return outcome;
}

}  // namespace walship
