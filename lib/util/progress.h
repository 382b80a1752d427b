// A progress bar on stderr (bytes done, rate, ETA) for long work. It draws
// only when stderr is a terminal and the user did not ask for --quiet, and
// redraws at most a few times a second so it costs nothing on hot paths.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace walship {

class Progress {
 public:
  // enabled: the caller's --quiet negated; the terminal check happens here.
  Progress(std::string label, uint64_t total_bytes, bool enabled);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Thread-safe.
  void add(uint64_t bytes);
  void set_total(uint64_t total_bytes);
  // Draws the final state and ends the line.
  void finish();

  static bool stderr_is_terminal();

 private:
  void draw(bool final);

  std::string m_label;
  std::atomic<uint64_t> m_total;
  std::atomic<uint64_t> m_done{0};
  bool m_enabled;
  bool m_finished = false;
  std::chrono::steady_clock::time_point m_start;
  std::atomic<int64_t> m_last_draw_ms{-1000};
  std::mutex m_draw_mutex;
};

// "1.5 GiB", "812 B"
std::string human_bytes(uint64_t bytes);

}  // namespace walship
