#include "lib/replica/control_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "lib/config/option_defs.h"
#include "lib/replica/local_state.h"
#include "lib/util/error.h"
#include "lib/util/time.h"

namespace walship {

namespace {

// How long a connection may take to send its request line.
constexpr int64_t k_request_wait_ms = 1000;
constexpr size_t k_max_line = 4096;
constexpr int k_backlog = 256;  // a burst of waiters connects at once

sockaddr_un address_of(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    throw Failure("control socket path '" + path + "' is longer than a Unix socket path can be (" +
                  std::to_string(sizeof(address.sun_path) - 1) +
                  " bytes): choose a shorter --control-socket");
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

void write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 1000) <= 0) return;  // a client that reads nothing is not waited for
      continue;
    }
    if (n <= 0) return;  // the client went away: nobody to tell
    done += static_cast<size_t>(n);
  }
}

// True if something accepts connections at `address`.
bool someone_listens(const sockaddr_un& address) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return probe && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
}

}  // namespace

std::string default_control_socket_path(const std::string& db_path) {
  return local_state_dir(db_path) + "/control.sock";
}

void check_control_socket_path(const std::string& path, bool live_too) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) {
    throw UsageError("control socket path '" + path +
                     "' exists and is not a socket: remove it or choose another --control-socket");
  }
  if (live_too && someone_listens(address_of(path))) {
    throw UsageError("another process listens on control socket '" + path +
                     "' (another replicate?): stop it or choose another --control-socket");
  }
}

std::optional<ControlRequestLine> parse_control_request(const std::string& line, std::string& error) {
  ControlRequestLine request;
  if (line.starts_with("snapshot ") && line.size() > 9) {
    request.kind = ControlRequestLine::Kind::snapshot;
    request.replica_url = line.substr(9);
    return request;
  }
  if (line == "sync") {
    request.timeout_ms = k_default_sync_timeout_ms;
    return request;
  }
  if (line.starts_with("sync ")) {
    const std::optional<int64_t> timeout = parse_duration_ms(line.substr(5));
    if (!timeout || *timeout <= 0) {
      error = "invalid timeout '" + line.substr(5) + "': give a duration such as 500ms, 5s or 1m";
      return std::nullopt;
    }
    request.timeout_ms = *timeout;
    return request;
  }
  error = "not a request walship understands (send \"sync\", \"sync TIMEOUT\" or \"snapshot URL\")";
  return std::nullopt;
}

ControlListener::ControlListener(const std::string& path, const std::string& db_path) : m_path(path) {
  const sockaddr_un address = address_of(m_path);
  struct stat db {};
  if (::stat(db_path.c_str(), &db) == 0) m_owner_uid = db.st_uid;
  if (m_path == default_control_socket_path(db_path)) {
    const std::string dir = local_state_dir(db_path);
    ::mkdir(dir.c_str(), 0700);
    // Run as root for an app of another user: that user must reach the
    // socket, which the mode and the owner below keep to it alone; walship's
    // files in the folder stay 0600.
    if (::geteuid() == 0 && m_owner_uid != 0) ::chmod(dir.c_str(), 0711);
  }
  check_control_socket_path(m_path, true);
  ::unlink(m_path.c_str());  // none, or a replicate that died left it
  m_fd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!m_fd) throw Failure(errno_message("unable to create a Unix socket", errno));
  if (::bind(m_fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    throw Failure(errno_message("unable to listen on '" + m_path + "'", errno));
  // 0600 and the database's owner's, the app that syncs. (Not through the
  // umask: it is the process's, and workers create files meanwhile. Until
  // the chmod, the umask's mode applies; the peer check in accept_all()
  // turns away any other user who connects in that moment.)
  if (::chmod(m_path.c_str(), 0600) != 0 ||
      (::geteuid() == 0 && m_owner_uid != 0 && ::lchown(m_path.c_str(), m_owner_uid, db.st_gid) != 0)) {
    const int e = errno;
    ::unlink(m_path.c_str());
    throw Failure(errno_message(
        "unable to give control socket '" + m_path + "' mode 0600 and the database's owner", e));
  }
  if (::listen(m_fd.get(), k_backlog) != 0) {
    const int e = errno;
    ::unlink(m_path.c_str());
    throw Failure(errno_message("unable to listen on '" + m_path + "'", e));
  }
}

ControlListener::~ControlListener() {
  if (m_fd) ::unlink(m_path.c_str());
}

std::vector<int> ControlListener::fds() const {
  std::vector<int> out{m_fd.get()};
  for (const Reading& r : m_reading) out.push_back(r.conn.get());
  return out;
}

void ControlListener::accept_all(int64_t now_ms) {
  for (;;) {
    UniqueFd conn(::accept4(m_fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) return;  // EAGAIN: none left (or a transient error: poll says again)
    ucred peer{};
    socklen_t size = sizeof peer;
    if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 ||
        (peer.uid != 0 && peer.uid != ::geteuid() && peer.uid != m_owner_uid)) {
      write_all(conn.get(), "error permission denied: only the database's owner may use this socket\n");
      continue;
    }
    m_reading.push_back({std::move(conn), {}, now_ms + k_request_wait_ms});
  }
}

std::vector<ControlRequest> ControlListener::take_requests(int64_t now_ms) {
  accept_all(now_ms);
  std::vector<ControlRequest> out;
  for (Reading& r : m_reading) {
    char buffer[512];
    bool closed = false;
    for (;;) {
      const ssize_t n = ::recv(r.conn.get(), buffer, sizeof buffer, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || (n < 0 && errno != EAGAIN)) closed = true;
      if (n <= 0) break;
      r.line.append(buffer, static_cast<size_t>(n));
    }
    const size_t end = r.line.find('\n');
    if (end == std::string::npos) {
      if (r.line.size() > k_max_line || now_ms >= r.deadline_ms) {
        write_all(r.conn.get(), "error no request line within a second\n");
        r.conn.reset();
      } else if (closed) {
        r.conn.reset();
      }
      continue;
    }
    std::string error;
    const std::optional<ControlRequestLine> request = parse_control_request(r.line.substr(0, end), error);
    if (request) {
      out.push_back({std::move(r.conn), *request});
    } else {
      write_all(r.conn.get(), "error " + error + "\n");
      r.conn.reset();
    }
  }
  std::erase_if(m_reading, [](const Reading& r) { return !r.conn; });
  return out;
}

void answer(ControlRequest& request, const std::string& line) {
  if (!request.conn) return;
  write_all(request.conn.get(), line + "\n");
  request.conn.reset();
}

std::optional<std::string> ask_control_socket(const std::string& path, const std::string& line,
                                              int64_t wait_ms) {
  sockaddr_un address{};
  try {
    address = address_of(path);
  } catch (const Failure&) {
    return std::nullopt;  // no replicate can listen there either
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw Failure(errno_message("unable to create a Unix socket", errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    if (errno == EACCES || errno == EPERM) {
      throw Failure(errno_message(
          "unable to connect to control socket '" + path + "': run this as the database's owner (or root)",
          errno));
    }
    return std::nullopt;  // none there, or a stale socket file
  }
  write_all(fd.get(), line + "\n");
  const int64_t deadline = wait_ms < 0 ? INT64_MAX : static_cast<int64_t>(now_ms()) + wait_ms;
  std::string answer;
  for (;;) {
    const int64_t left = deadline - static_cast<int64_t>(now_ms());
    if (left <= 0)
      throw Failure("no answer on control socket '" + path + "' in time (is replicate stopped?)");
    pollfd p{fd.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 60'000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char c = 0;
    const ssize_t n = ::read(fd.get(), &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Failure("the replicate on control socket '" + path + "' stopped before answering");
    if (c == '\n') return answer;
    if (answer.size() < k_max_line) answer += c;
  }
}

std::optional<SyncAnswer> ask_for_sync(const std::string& path, int64_t timeout_ms) {
  const std::optional<std::string> line =
      ask_control_socket(path, "sync " + render_duration_ms(timeout_ms), timeout_ms + 1000);
  if (!line) return std::nullopt;
  SyncAnswer answer;
  answer.line = *line;
  const size_t space = line->find(' ');
  const std::string word = line->substr(0, space);
  answer.message = space == std::string::npos ? *line : line->substr(space + 1);
  answer.kind = word == "ok"        ? SyncAnswer::Kind::ok
                : word == "timeout" ? SyncAnswer::Kind::timeout
                : word == "fenced"  ? SyncAnswer::Kind::fenced
                                    : SyncAnswer::Kind::error;
  return answer;
}

}  // namespace walship
