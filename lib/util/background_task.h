// One piece of work on a thread of its own, which the thread that started it
// polls instead of waiting for: what keeps a replica's slow maintenance
// (compaction, retention) off the path that ships commits.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <thread>

namespace walship {

class BackgroundTask {
 public:
  // The work; `stop` is set when stop() asks it to end early.
  using Work = std::function<void(const std::atomic<bool>& stop)>;

  BackgroundTask() = default;
  ~BackgroundTask() { stop(); }
  BackgroundTask(const BackgroundTask&) = delete;
  BackgroundTask& operator=(const BackgroundTask&) = delete;

  // Runs `work` on a new thread. Not while busy().
  void start(Work work);
  // Started and not collected yet.
  bool busy() const { return m_thread.joinable(); }
  // False while the work runs. Once it has returned: joins its thread and
  // returns true, or rethrows what the work threw. True when not busy().
  bool collect();
  // Asks the work to stop, waits for it and drops what it threw, if anything.
  void stop();

 private:
  std::thread m_thread;
  std::atomic<bool> m_done{false};
  std::atomic<bool> m_stop{false};
  std::exception_ptr m_error;  // written by the work's thread before m_done
};

}  // namespace walship
