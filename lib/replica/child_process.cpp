#include "lib/replica/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/util/error.h"
#include "lib/util/signals.h"

namespace walship {

void ChildProcess::spawn(const std::vector<std::string>& argv, const std::string& option) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0)
    throw Failure(std::string("unable to create a pipe: ") + std::strerror(errno));
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    throw Failure("unable to start the " + option + " command: fork: " + std::strerror(err));
  }
  if (pid == 0) {
    SignalPipe::reset_in_child();
    ::execvp(args[0], args.data());
    const int err = errno;
    [[maybe_unused]] const ssize_t n = ::write(status_pipe[1], &err, sizeof err);
    ::_exit(127);
  }
  ::close(status_pipe[1]);
  // The pipe closes on a successful exec (O_CLOEXEC); an errno means it failed.
  int err = 0;
  pollfd pfd{status_pipe[0], POLLIN, 0};
  ::poll(&pfd, 1, -1);
  const ssize_t n = ::read(status_pipe[0], &err, sizeof err);
  ::close(status_pipe[0]);
  if (n == sizeof err) {
    ::waitpid(pid, nullptr, 0);
    throw UsageError("unable to run " + option + " command '" + argv[0] + "': " + std::strerror(err));
  }
  m_pid = pid;
}

void ChildProcess::forward(int sig) const {
  if (m_pid > 0) ::kill(m_pid, sig);
}

std::optional<int> ChildProcess::reap() {
  if (m_pid <= 0) return std::nullopt;
  int status = 0;
  if (::waitpid(m_pid, &status, WNOHANG) != m_pid) return std::nullopt;
  m_pid = -1;
  return status;
}

int ChildProcess::exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

std::string ChildProcess::describe(int status) {
  return WIFEXITED(status) ? std::to_string(WEXITSTATUS(status))
                           : std::string("signal ") + strsignal(WTERMSIG(status));
}

}  // namespace walship
