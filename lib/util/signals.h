// The one owner of the process's signal handlers. Every signal walship
// catches goes through one handler in signals.cpp, which knows three things:
// - the temp files that must not survive the process (TempFile registers
//   them here): a stop signal (SIGTERM, SIGINT, SIGHUP) that finds one
//   removes it and kills the process with the signal, when the command asked
//   for that (restore, snapshot, serve-replica's first restore);
// - the stop set a command turns into a graceful stop: once nothing is left
//   to clean up, the signal is written to a self-pipe the command polls
//   (serve-replica, replicate);
// - the signals forwarded to replicate's --exec child and SIGCHLD, which go
//   to the same pipe.
// No other file calls sigaction(), signal() or sigprocmask().
#pragma once

#include <csignal>
#include <cstdint>
#include <span>
#include <string>

namespace walship {

// The signals that end a command: a graceful stop, or death by the signal.
inline constexpr int k_stop_signals[] = {SIGTERM, SIGINT, SIGHUP};
// The signals replicate forwards to its --exec child (without a child,
// SIGTERM, SIGINT and SIGQUIT stop it and the others are ignored).
inline constexpr int k_forwarded_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

// For commands that end by a signal (restore, snapshot): a stop signal
// removes every live temp file, then kills the process with the signal.
void die_on_stop_signals();

// What a caught stop signal does while a registered temp file exists.
enum class TempFilesOnStop {
  remove_and_die,  // the command's output is being written: remove it and die
  left_to_owner,   // signal the pipe; the temp file's owner finishes or removes it
};

// The self-pipe: while one exists, the signals it was given are written to
// it (one byte each) instead of running their default action. One at a time
// per process; the destructor puts back the handlers it replaced and closes
// the pipe.
class SignalPipe {
 public:
  // Catches `signals`, and SIGCHLD too with `children` (a process with a
  // child to reap).
  SignalPipe(std::span<const int> signals, TempFilesOnStop temp_files, bool children = false);
  ~SignalPipe();
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  // Readable while a caught signal waits to be read.
  int fd() const { return m_read_fd; }
  // The next caught signal, or 0 if none is waiting. Never blocks.
  int next();
  // The next caught signal, waiting up to `timeout_ms` (-1: forever) for one;
  // 0 if none came.
  int wait(int64_t timeout_ms);

  // In a child between fork() and exec(): the caught signals back to their
  // default action and unblocked, so the child does not write to this pipe.
  // Async-signal-safe.
  static void reset_in_child();

 private:
  static constexpr int k_max_signals = 8;
  int m_read_fd = -1;
  int m_write_fd = -1;
  int m_count = 0;
  int m_signals[k_max_signals]{};
  struct sigaction m_saved[k_max_signals] {};
};

// Keeps the stop signals from being handled on this thread while alive (the
// moment between a temp file's rename and its unregistration). A stop
// signal that comes meanwhile is handled when this ends, on a process where
// the file is committed.
class StopSignalsBlocked {
 public:
  StopSignalsBlocked();
  ~StopSignalsBlocked();
  StopSignalsBlocked(const StopSignalsBlocked&) = delete;
  StopSignalsBlocked& operator=(const StopSignalsBlocked&) = delete;

 private:
  sigset_t m_saved;
};

// The temp-file cleanup hook (for TempFile). Registers `path` for removal by
// a stop signal; returns its slot, or -1 when no slot is free or the path is
// too long (the file is then only removed by its owner).
int register_temp_file(const std::string& path);
// Forgets a slot from register_temp_file (-1 is ignored).
void unregister_temp_file(int slot);

}  // namespace walship
