#include "lib/replica/object_stream.h"

#include <algorithm>
#include <cstring>

namespace walship {

ObjectStream::ObjectStream(Storage& storage, std::string key, uint64_t size, int parallelism,
                           uint64_t chunk_size)
    : m_storage(storage),
      m_key(std::move(key)),
      m_size(size),
      m_chunk_size(chunk_size),
      m_chunks((size + chunk_size - 1) / chunk_size),
      m_window(static_cast<uint64_t>(std::max(parallelism, 1)) + 1) {
  const uint64_t threads = std::min<uint64_t>(static_cast<uint64_t>(std::max(parallelism, 1)), m_chunks);
  for (uint64_t i = 0; i < threads; ++i) m_workers.emplace_back([this] { fetch_loop(); });
}

ObjectStream::~ObjectStream() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_stopping = true;
  }
  m_changed.notify_all();
  for (std::thread& worker : m_workers) worker.join();
}

void ObjectStream::fetch_loop() {
  for (;;) {
    uint64_t chunk = 0;
    {
      std::unique_lock<std::mutex> lock(m_mutex);
      m_changed.wait(lock, [this] {
        return m_stopping || m_error || m_next_to_fetch >= m_chunks || m_next_to_fetch < m_current + m_window;
      });
      if (m_stopping || m_error || m_next_to_fetch >= m_chunks) return;
      chunk = m_next_to_fetch++;
    }
    const uint64_t offset = chunk * m_chunk_size;
    const uint64_t length = std::min(m_chunk_size, m_size - offset);
    MemorySink sink;
    sink.data().reserve(length);
    std::exception_ptr error;
    try {
      if (!m_storage.get(m_key, sink, ByteRange{offset, length})) {
        throw Failure("replica object '" + m_key + "' in '" + m_storage.url() +
                      "' disappeared while reading it: is a prune running? try again");
      }
      if (sink.data().size() != length) {
        throw Failure("replica object '" + m_key + "' in '" + m_storage.url() + "' is shorter than listed (" +
                      std::to_string(offset + sink.data().size()) + " of " + std::to_string(m_size) +
                      " bytes): objects must never be rewritten; run walship verify");
      }
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      if (error) {
        if (!m_error) m_error = error;
      } else {
        m_fetched += length;
        m_ready.emplace(chunk, std::move(sink.data()));
      }
    }
    m_changed.notify_all();
  }
}

size_t ObjectStream::read(std::span<std::byte> out) {
  std::unique_lock<std::mutex> lock(m_mutex);
  size_t done = 0;
  while (done < out.size() && m_current < m_chunks) {
    m_changed.wait(lock, [this] { return m_error || m_ready.count(m_current) > 0; });
    if (m_error) std::rethrow_exception(m_error);
    std::vector<std::byte>& chunk = m_ready[m_current];
    const size_t n = std::min(out.size() - done, chunk.size() - m_current_pos);
    std::memcpy(out.data() + done, chunk.data() + m_current_pos, n);
    done += n;
    m_current_pos += n;
    if (m_current_pos == chunk.size()) {
      m_ready.erase(m_current);
      ++m_current;
      m_current_pos = 0;
      m_changed.notify_all();
    }
    // Hand back what we have rather than wait for the next chunk.
    if (done > 0) break;
  }
  return done;
}

void ObjectStream::rewind() {
  throw Failure("internal error: replica object '" + m_key + "' was read twice");
}

uint64_t ObjectStream::bytes_fetched() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_fetched;
}

}  // namespace walship
