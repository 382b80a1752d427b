// Local copies of what compaction will read back (the L0 deltas a
// replicator shipped), so that merging them costs no request: at one commit
// a second, reading a minute's deltas back was as many GETs as the PUTs
// that shipped them. Kept in anonymous files in DB-walship/ (nothing to
// clean up after a crash), one per compaction bucket (the span the next
// level's file will cover), closed once everything in it was compacted.
// Bounded in bytes: past the limit an object is not kept, and compaction
// reads it from the store as before.
// Safe to share between the replicator's step and its maintenance thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "lib/util/byte_stream.h"
#include "lib/util/fs.h"

namespace walship {

class DeltaCache {
 public:
  DeltaCache(std::string dir, uint64_t limit_bytes) : m_dir(std::move(dir)), m_limit(limit_bytes) {}

  // Copies the `size` bytes at the start of `fd` as `key`, into the file of
  // (`level`, `bucket`). False (nothing kept) past the limit or when the
  // local disk refuses: the store still has the object.
  bool keep(const std::string& key, int level, int64_t bucket, int fd, uint64_t size);
  // Streams `key` into `out`; false when it is not kept or cannot be read
  // (then `out` may hold part of it: the caller starts over from the store).
  bool read(const std::string& key, ByteSink& out) const;
  // Forgets `key`; a file with nothing left in it is closed.
  void drop(const std::string& key);
  // Forgets every key but those in `keys`.
  void retain(const std::set<std::string>& keys);
  // Bytes kept.
  uint64_t bytes() const;

  static constexpr uint64_t k_default_limit = uint64_t{16} << 20;

 private:
  struct File {
    std::shared_ptr<UniqueFd> fd;  // shared with a read() under way
    uint64_t end = 0;
    int entries = 0;
  };
  struct Entry {
    std::pair<int, int64_t> file;
    uint64_t offset = 0;
    uint64_t size = 0;
  };
  void drop_locked(std::map<std::string, Entry>::iterator it);

  std::string m_dir;
  uint64_t m_limit;
  mutable std::mutex m_mutex;
  std::map<std::pair<int, int64_t>, File> m_files;  // by (level, bucket)
  std::map<std::string, Entry> m_entries;
  uint64_t m_bytes = 0;
};

}  // namespace walship
