#include "lib/util/progress.h"

#include <unistd.h>

#include <cstdio>

namespace walship {

std::string human_bytes(uint64_t bytes) {
  static const char* const k_units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", value, k_units[unit]);
  }
  return buf;
}

bool Progress::stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, uint64_t total_bytes, bool enabled)
    : m_label(std::move(label)),
      m_total(total_bytes),
      m_enabled(enabled && stderr_is_terminal()),
      m_start(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  if (m_enabled && !m_finished) {
    std::fputs("\n", stderr);
  }
}

void Progress::set_total(uint64_t total_bytes) { m_total = total_bytes; }

void Progress::add(uint64_t bytes) {
  m_done += bytes;
  if (!m_enabled) return;
  const auto elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - m_start)
          .count();
  int64_t last = m_last_draw_ms.load();
  if (elapsed_ms - last < 200) return;
  if (!m_last_draw_ms.compare_exchange_strong(last, elapsed_ms)) return;
  draw(false);
}

void Progress::finish() {
  if (!m_enabled || m_finished) return;
  draw(true);
  m_finished = true;
}

void Progress::draw(bool final) {
  std::lock_guard<std::mutex> lock(m_draw_mutex);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
  const uint64_t done = m_done.load();
  const uint64_t total = m_total.load();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  const double fraction = total ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total)) : 0;
  constexpr int k_width = 30;
  std::string bar(static_cast<size_t>(fraction * k_width), '#');
  bar.resize(k_width, '-');
  char eta[32] = "";
  if (!final && rate > 0 && total > done) {
    std::snprintf(eta, sizeof eta, " ETA %.0fs", static_cast<double>(total - done) / rate);
  }
  std::fprintf(stderr, "\r%s [%s] %3.0f%% %s / %s %s/s%s\033[K%s", m_label.c_str(), bar.c_str(),
               fraction * 100, human_bytes(done).c_str(), human_bytes(total).c_str(),
               human_bytes(static_cast<uint64_t>(rate)).c_str(), eta, final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace walship
