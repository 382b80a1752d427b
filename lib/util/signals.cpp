#include "lib/util/signals.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "lib/util/error.h"

namespace walship {

namespace {

// Paths the handler unlinks. Fixed storage: a handler may not allocate.
constexpr int k_cleanup_slots = 64;
constexpr size_t k_cleanup_path_max = 4096;
// A slot is claimed, then its path written, then it is live: the handler
// only reads live slots.
enum SlotState : int { k_free = 0, k_claimed = 1, k_live = 2 };
std::array<std::atomic<int>, k_cleanup_slots> g_slot_state{};
std::array<std::array<char, k_cleanup_path_max>, k_cleanup_slots> g_slot_path{};

// The live SignalPipe, as the handler sees it (lock-free atomics only).
std::atomic<int> g_pipe_write{-1};
std::atomic<uint64_t> g_caught{0};  // bit n: signal n goes to the pipe
std::atomic<bool> g_temp_files_die{true};

uint64_t bit(int sig) { return sig > 0 && sig < 64 ? uint64_t{1} << sig : 0; }

bool is_stop_signal(int sig) {
  return std::find(std::begin(k_stop_signals), std::end(k_stop_signals), sig) != std::end(k_stop_signals);
}

// True if a temp file was there to remove. A slot whose file is already
// gone (renamed into place by a commit running on another thread, or not
// created yet) does not count: nothing of it is left behind.
bool remove_temp_files() {
  bool removed = false;
  for (int i = 0; i < k_cleanup_slots; ++i) {
    if (g_slot_state[i].load() == k_live && ::unlink(g_slot_path[i].data()) == 0) removed = true;
  }
  return removed;
}

// The default action of `sig`, once this handler returns (the signal is
// blocked while its handler runs, so raise() leaves it pending).
void die_of(int sig) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);
}

extern "C" void on_signal(int sig) {
  const int saved_errno = errno;
  const int pipe_fd = g_pipe_write.load();
  const bool to_pipe = pipe_fd >= 0 && (g_caught.load() & bit(sig)) != 0;
  if (!to_pipe) {
    // die_on_stop_signals(), or a signal caught by a pipe that is gone.
    remove_temp_files();
    die_of(sig);
  } else if (is_stop_signal(sig) && g_temp_files_die.load() && remove_temp_files()) {
    die_of(sig);
  } else {
    const auto byte = static_cast<unsigned char>(sig);
    [[maybe_unused]] const ssize_t n = ::write(pipe_fd, &byte, 1);
  }
  errno = saved_errno;
}

struct sigaction handler_action() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : k_stop_signals) sigaddset(&sa.sa_mask, sig);
  sa.sa_flags = SA_RESTART;
  return sa;
}

}  // namespace

void die_on_stop_signals() {
  const struct sigaction sa = handler_action();
  for (int sig : k_stop_signals) ::sigaction(sig, &sa, nullptr);
}

SignalPipe::SignalPipe(std::span<const int> signals, TempFilesOnStop temp_files, bool children) {
  if (signals.size() + (children ? 1 : 0) > k_max_signals)
    throw Failure("too many signals for one signal pipe");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
    throw Failure(errno_message("unable to create a pipe", errno));
  int expected = -1;
  if (!g_pipe_write.compare_exchange_strong(expected, fds[1])) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Failure("signals are already caught by another signal pipe of this process");
  }
  m_read_fd = fds[0];
  m_write_fd = fds[1];
  for (int sig : signals) m_signals[m_count++] = sig;
  if (children) m_signals[m_count++] = SIGCHLD;
  uint64_t caught = 0;
  for (int i = 0; i < m_count; ++i) caught |= bit(m_signals[i]);
  g_caught.store(caught);
  g_temp_files_die.store(temp_files == TempFilesOnStop::remove_and_die);
  const struct sigaction sa = handler_action();
  for (int i = 0; i < m_count; ++i) ::sigaction(m_signals[i], &sa, &m_saved[i]);
}

SignalPipe::~SignalPipe() {
  for (int i = m_count - 1; i >= 0; --i) ::sigaction(m_signals[i], &m_saved[i], nullptr);
  g_caught.store(0);
  g_pipe_write.store(-1);
  ::close(m_read_fd);
  ::close(m_write_fd);
}

int SignalPipe::next() {
  unsigned char sig = 0;
  return ::read(m_read_fd, &sig, 1) == 1 ? sig : 0;
}

int SignalPipe::wait(int64_t timeout_ms) {
  if (const int sig = next(); sig != 0) return sig;
  pollfd fd{m_read_fd, POLLIN, 0};
  ::poll(&fd, 1, timeout_ms < 0 ? -1 : static_cast<int>(std::min<int64_t>(timeout_ms, 3'600'000)));
  return next();
}

void SignalPipe::reset_in_child() {
  const uint64_t caught = g_caught.load();
  sigset_t set;
  sigemptyset(&set);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < 64; ++sig) {
    if ((caught & bit(sig)) == 0 && !is_stop_signal(sig)) continue;
    ::sigaction(sig, &dfl, nullptr);
    sigaddset(&set, sig);
  }
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

StopSignalsBlocked::StopSignalsBlocked() {
  sigset_t stops;
  sigemptyset(&stops);
  for (int sig : k_stop_signals) sigaddset(&stops, sig);
  ::pthread_sigmask(SIG_BLOCK, &stops, &m_saved);
}

StopSignalsBlocked::~StopSignalsBlocked() { ::pthread_sigmask(SIG_SETMASK, &m_saved, nullptr); }

int register_temp_file(const std::string& path) {
  if (path.size() >= k_cleanup_path_max) return -1;
  for (int i = 0; i < k_cleanup_slots; ++i) {
    int expected = k_free;
    if (g_slot_state[i].compare_exchange_strong(expected, k_claimed)) {
      std::memcpy(g_slot_path[i].data(), path.c_str(), path.size() + 1);
      g_slot_state[i].store(k_live);
      return i;
    }
  }
  return -1;
}

void unregister_temp_file(int slot) {
  if (slot >= 0) g_slot_state[slot].store(k_free);
}

}  // namespace walship
