// A test server run as a child process (the GCS test server, sshd): started
// with posix_spawn, stopped with SIGTERM and reaped when the object goes away,
// so no test leaves a server behind.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace walship::test {

class ServerProcess {
 public:
  ServerProcess() = default;
  // Starts argv[0] (looked up in PATH). With `read_first_line`, waits up to
  // 20 s for the first line the child prints on stdout and keeps it in
  // first_line(); otherwise stdout is inherited.
  ServerProcess(const std::vector<std::string>& argv, bool read_first_line) { start(argv, read_first_line); }
  ~ServerProcess() { stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  void start(const std::vector<std::string>& argv, bool read_first_line) {
    int fds[2] = {-1, -1};
    if (read_first_line && ::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (read_first_line) posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawnp(&m_pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (read_first_line) ::close(fds[1]);
    if (rc != 0) {
      if (read_first_line) ::close(fds[0]);
      m_pid = -1;
      throw std::runtime_error("unable to start " + argv[0]);
    }
    if (!read_first_line) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    char ch = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      if (::read(fds[0], &ch, 1) != 1) break;
      if (ch == '\n') break;
      m_first_line += ch;
    }
    ::close(fds[0]);
    if (ch != '\n') throw std::runtime_error(argv[0] + " did not start: no first line on stdout");
  }

  void stop(int signal = SIGTERM) {
    if (m_pid <= 0) return;
    ::kill(m_pid, signal);
    int status = 0;
    ::waitpid(m_pid, &status, 0);
    m_pid = -1;
  }

  pid_t pid() const { return m_pid; }
  const std::string& first_line() const { return m_first_line; }

 private:
  pid_t m_pid = -1;
  std::string m_first_line;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("unable to find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// True once something accepts connections on 127.0.0.1:port (waits up to `limit`).
inline bool wait_for_port(int port, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace walship::test
