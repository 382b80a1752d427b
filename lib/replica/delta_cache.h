// Local copies of what compaction will read back (the L0 deltas a
// replicator shipped), so that merging them costs no request: at one commit
// a second, reading a minute's deltas back was as many GETs as the PUTs
// that shipped them. Kept in files of DB-walship/, one per compaction
// bucket (the span the next level's file will cover), removed once
// everything in it was compacted. A file is opened for each copy in or out
// and closed at once: a fleet of busy databases holds no descriptor for it.
// Its name carries the process's pid and a nonce: a new cache removes the
// files of processes that are gone (a crash leaves them behind).
// Bounded in bytes: past the limit an object is not kept, and compaction
// reads it from the store as before. A file that vanished (removed by
// another process's clean-up) is a miss, never wrong bytes: it is never
// created again under the same name.
// Safe to share between the replicator's step and its maintenance thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "lib/util/byte_stream.h"

namespace walship {

class DeltaCache {
 public:
  // Removes what gone processes left in `dir`.
  DeltaCache(std::string dir, uint64_t limit_bytes);
  ~DeltaCache();
  DeltaCache(const DeltaCache&) = delete;
  DeltaCache& operator=(const DeltaCache&) = delete;

  // Copies the `size` bytes at the start of `fd` as `key`, into the file of
  // (`level`, `bucket`). False (nothing kept) past the limit or when the
  // local disk refuses: the store still has the object.
  bool keep(const std::string& key, int level, int64_t bucket, int fd, uint64_t size);
  // Streams `key` into `out`; false when it is not kept or cannot be read
  // (then `out` may hold part of it: the caller starts over from the store).
  bool read(const std::string& key, ByteSink& out) const;
  // Forgets `key`; a file with nothing left in it is removed.
  void drop(const std::string& key);
  // Forgets every key but those in `keys`.
  void retain(const std::set<std::string>& keys);
  // Bytes kept.
  uint64_t bytes() const;

  static constexpr uint64_t k_default_limit = uint64_t{16} << 20;

 private:
  struct File {
    std::string path;
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
