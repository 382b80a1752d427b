// replicate's control path: one Unix socket per replicated database,
// DB-walship/control.sock, through which `walship snapshot DB URL` asks the
// replicate holding the replica's lease for a snapshot instead of writing
// beside it (DESIGN.md, "Fencing").
//
// One request a connection, one line each way:
//   client: "snapshot URL\n"      (URL as the client's storage names it)
//   server: "ok TXID\n" or "error MESSAGE\n", then it closes.
#pragma once

#include <optional>
#include <string>

#include "lib/util/fs.h"

namespace walship {

// "DB-walship/control.sock".
std::string control_socket_path(const std::string& db_path);

struct ControlRequest {
  UniqueFd conn;
  std::string replica_url;  // of a "snapshot" request
};

class ControlListener {
 public:
  // Listens at control_socket_path(db_path) (a stale socket file there is
  // replaced). Throws Failure when it cannot; the caller goes on without.
  explicit ControlListener(const std::string& db_path);
  ~ControlListener();
  ControlListener(const ControlListener&) = delete;
  ControlListener& operator=(const ControlListener&) = delete;

  int fd() const { return m_fd.get(); }
  // Accepts one connection and reads its request (waiting at most a second
  // for it); nullopt when there was none or it was not a request.
  std::optional<ControlRequest> accept_request();

 private:
  std::string m_path;
  UniqueFd m_fd;
};

// Sends the answer line and closes the connection.
void answer(ControlRequest& request, const std::string& line);

// Client: asks the replicate of `db_path` for a snapshot of `replica_url`
// and waits for its answer line. nullopt when no replicate listens there.
std::optional<std::string> ask_for_snapshot(const std::string& db_path, const std::string& replica_url);

}  // namespace walship
