#include "lib/util/background_task.h"

#include <utility>

namespace walship {

void BackgroundTask::start(Work work) {
  m_done = false;
  m_stop = false;
  m_error = nullptr;
  m_thread = std::thread([this, work = std::move(work)] {
    try {
      work(m_stop);
    } catch (...) {
      m_error = std::current_exception();
    }
    m_done = true;
  });
}

bool BackgroundTask::collect() {
  if (!m_thread.joinable()) return true;
  if (!m_done) return false;
  m_thread.join();
  if (m_error) std::rethrow_exception(std::exchange(m_error, nullptr));
  return true;
}

void BackgroundTask::stop() {
  if (!m_thread.joinable()) return;
  m_stop = true;
  m_thread.join();
  m_error = nullptr;
}

}  // namespace walship
