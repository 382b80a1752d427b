// replicate's --exec child: started once the databases are replicated,
// forwarded the signals walship receives, reaped when it exits; its exit
// status becomes walship's exit code once the last ship is done.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace walship {

class ChildProcess {
 public:
  // Runs `argv` (argv[0] looked up in PATH) with default signal handling.
  // Returns once it runs; throws UsageError naming the command (and the
  // option that gave it, `option`) if it cannot be executed (the failed
  // child is reaped).
  void spawn(const std::vector<std::string>& argv, const std::string& option = "--exec");

  // True between spawn() and the reap of its exit.
  bool running() const { return m_pid > 0; }
  pid_t pid() const { return m_pid; }

  // Sends `sig` to the child, if it runs: the app decides what it means.
  void forward(int sig) const;

  // On SIGCHLD: the child's wait status if it exited (reaped then, once),
  // else nothing.
  std::optional<int> reap();

  // walship's exit code for a child's wait status: its exit status, 128 +
  // the signal that killed it, else 1.
  static int exit_code(int status);
  // "0", "3" or "signal Terminated", for the log.
  static std::string describe(int status);

 private:
  pid_t m_pid = -1;
};

}  // namespace walship
