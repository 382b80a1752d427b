#include "lib/replica/control_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/replica/local_state.h"
#include "lib/util/error.h"

namespace walship {

namespace {

constexpr int k_request_wait_ms = 1000;
constexpr size_t k_max_line = 4096;

sockaddr_un address_of(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    throw Failure("control socket path '" + path + "' is longer than a Unix socket path can be");
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

// One line from `fd` (without its newline), waiting at most `timeout_ms`
// (-1: for ever); nullopt on EOF, a timeout or an over-long line.
std::optional<std::string> read_line(int fd, int timeout_ms) {
  std::string line;
  char c = 0;
  while (line.size() < k_max_line) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    if (c == '\n') return line;
    line += c;
  }
  return std::nullopt;
}

void write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away: nobody to tell
    done += static_cast<size_t>(n);
  }
}

}  // namespace

std::string control_socket_path(const std::string& db_path) {
  return local_state_dir(db_path) + "/control.sock";
}

ControlListener::ControlListener(const std::string& db_path) : m_path(control_socket_path(db_path)) {
  const sockaddr_un address = address_of(m_path);
  ::mkdir(local_state_dir(db_path).c_str(), 0700);
  m_fd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!m_fd) throw Failure(errno_message("unable to create a Unix socket", errno));
  ::unlink(m_path.c_str());  // a replicate that died left it; the lease says no other runs
  if (::bind(m_fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(m_fd.get(), 8) != 0) {
    throw Failure(errno_message("unable to listen on '" + m_path + "'", errno));
  }
}

ControlListener::~ControlListener() {
  if (m_fd) ::unlink(m_path.c_str());
}

std::optional<ControlRequest> ControlListener::accept_request() {
  UniqueFd conn(::accept4(m_fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn) return std::nullopt;
  const std::optional<std::string> line = read_line(conn.get(), k_request_wait_ms);
  if (!line || !line->starts_with("snapshot ")) {
    write_all(conn.get(), "error not a request walship understands\n");
    return std::nullopt;
  }
  return ControlRequest{std::move(conn), line->substr(9)};
}

void answer(ControlRequest& request, const std::string& line) {
  write_all(request.conn.get(), line + "\n");
  request.conn.reset();
}

std::optional<std::string> ask_for_snapshot(const std::string& db_path, const std::string& replica_url) {
  const std::string path = control_socket_path(db_path);
  sockaddr_un address{};
  try {
    address = address_of(path);
  } catch (const Failure&) {
    return std::nullopt;  // no replicate can listen there either
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw Failure(errno_message("unable to create a Unix socket", errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return std::nullopt;  // none there, or a stale socket file
  }
  write_all(fd.get(), "snapshot " + replica_url + "\n");
  const std::optional<std::string> line = read_line(fd.get(), -1);
  if (!line) {
    throw Failure("the replicate of '" + db_path + "' stopped before answering: run walship snapshot again");
  }
  return line;
}

}  // namespace walship
