// replicate's control path: one Unix socket per replicated database,
// DB-walship/control.sock unless --control-socket (control-socket in
// walship.toml) moves it, served by the replicate that holds the replica's
// lease (DESIGN.md, "Control socket").
//
// One request a connection, one line each way, then the server closes:
//   "sync\n" or "sync TIMEOUT\n"  (TIMEOUT a duration: "5s", "500ms"; default
//                                 k_default_sync_timeout_ms)
//       -> "ok\n"                 everything committed when the request
//                                 arrived is in a delta on every replica
//       -> "timeout MESSAGE\n"    not within TIMEOUT (MESSAGE says why)
//       -> "fenced MESSAGE\n"     another writer took the replica
//       -> "error MESSAGE\n"      anything else (stopped first, a bad line)
//   "snapshot URL\n"              (URL as the client's storage names it)
//       -> "ok TXID\n" or "error MESSAGE\n"
// The socket is mode 0600, owned by the database file's owner; a peer of
// another uid (but root's and ours) is answered "error" and closed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/util/fs.h"

namespace walship {

// "DB-walship/control.sock".
std::string default_control_socket_path(const std::string& db_path);

// A request line, parsed. Pure.
struct ControlRequestLine {
  enum class Kind { sync, snapshot } kind = Kind::sync;
  std::string replica_url;  // of a snapshot
  int64_t timeout_ms = 0;   // of a sync
};
// nullopt: not a request walship understands (`error` names why).
std::optional<ControlRequestLine> parse_control_request(const std::string& line, std::string& error);

struct ControlRequest {
  UniqueFd conn;
  ControlRequestLine request;
};

// Throws UsageError when `path` exists and is not a socket, or (`live_too`)
// is a socket another process listens on: checked again when listening;
// this lets replicate refuse before it writes anything. (At the default
// path, a live socket is another replicate of the same database, which the
// replica's lease turns away with exit 4.)
void check_control_socket_path(const std::string& path, bool live_too);

class ControlListener {
 public:
  // Listens at `path` for the database `db_path`. A stale socket file there
  // (nobody listening) is replaced. Throws UsageError when `path` exists and
  // is not a socket, or a live process listens there; Failure when it cannot
  // listen otherwise.
  ControlListener(const std::string& path, const std::string& db_path);
  ~ControlListener();
  ControlListener(const ControlListener&) = delete;
  ControlListener& operator=(const ControlListener&) = delete;

  const std::string& path() const { return m_path; }
  // The descriptors to poll for input: the listening socket and every
  // connection whose request line is still coming.
  std::vector<int> fds() const;
  // Whether a connection's request line is still coming (it has a deadline).
  bool reading() const { return !m_reading.empty(); }
  // After poll() said one of fds() is readable (or at `now_ms`, for the
  // deadlines): accepts new connections, reads what arrived, and returns the
  // whole requests. A bad line or a peer of another user is answered
  // "error ..." here; a connection silent for a second is dropped.
  std::vector<ControlRequest> take_requests(int64_t now_ms);

 private:
  struct Reading {
    UniqueFd conn;
    std::string line;
    int64_t deadline_ms = 0;
  };
  void accept_all(int64_t now_ms);
  std::string m_path;
  UniqueFd m_fd;
  uint32_t m_owner_uid = 0;  // the database file's owner, who may connect
  std::vector<Reading> m_reading;
};

// Sends the answer line (a newline is added) and closes the connection.
void answer(ControlRequest& request, const std::string& line);

// Client: sends `line` to the control socket at `path` and waits up to
// `wait_ms` (-1: for ever) for the answer line. nullopt when nobody listens
// there. Throws Failure when the server closed or did not answer in time,
// or (EACCES) when this user may not connect.
std::optional<std::string> ask_control_socket(const std::string& path, const std::string& line,
                                              int64_t wait_ms);

// Client: a "sync TIMEOUT" to the socket at `path`: the answer line, its
// first word as `kind` and the rest as `message` (the whole line when
// there is no rest). The replicate answers "timeout" itself at the
// deadline; the client waits a second more, for one that cannot answer at
// all (stopped, overloaded). nullopt and throws as ask_control_socket().
struct SyncAnswer {
  enum class Kind { ok, timeout, fenced, error } kind = Kind::error;
  std::string line;
  std::string message;
};
std::optional<SyncAnswer> ask_for_sync(const std::string& path, int64_t timeout_ms);

}  // namespace walship
