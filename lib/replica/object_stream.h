// Reads one replica object as a stream while fetching it as several ranges in
// parallel: what makes restores from object stores fast, without ever holding
// more than a small window of the object in memory or writing it to disk.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/storage/storage.h"

namespace walship {

class ObjectStream : public ByteSource {
 public:
  // Fetches `size` bytes of `key` in chunks of `chunk_size`, with up to
  // `parallelism` requests in flight and at most parallelism + 1 chunks buffered.
  ObjectStream(Storage& storage, std::string key, uint64_t size, int parallelism,
               uint64_t chunk_size = k_default_chunk_size);
  ~ObjectStream() override;
  ObjectStream(const ObjectStream&) = delete;
  ObjectStream& operator=(const ObjectStream&) = delete;

  uint64_t size() const override { return m_size; }
  // Throws the fetch's error (a missing object, a changed size, a storage failure).
  size_t read(std::span<std::byte> out) override;
  // Streams are read once: replica readers never rewind.
  void rewind() override;

  uint64_t bytes_fetched() const;

  static constexpr uint64_t k_default_chunk_size = 4ull << 20;

 private:
  void fetch_loop();

  Storage& m_storage;
  std::string m_key;
  uint64_t m_size;
  uint64_t m_chunk_size;
  uint64_t m_chunks;
  uint64_t m_window;

  mutable std::mutex m_mutex;
  std::condition_variable m_changed;
  uint64_t m_next_to_fetch = 0;
  uint64_t m_current = 0;    // chunk being consumed
  size_t m_current_pos = 0;  // bytes of it consumed
  std::map<uint64_t, std::vector<std::byte>> m_ready;
  std::exception_ptr m_error;
  bool m_stopping = false;
  uint64_t m_fetched = 0;
  std::vector<std::thread> m_workers;
};

}  // namespace walship
