// The control sockets of `walship replicate`'s databases (control_socket.h)
// and the requests waiting on them: a `walship snapshot` is answered after
// the step that writes it, a `walship sync` after the step that covers it
// (sync_waiters.h). Main thread only: the loop (replicate_loop.cpp) hands it
// the polled descriptors and each finished step, and asks it for the next
// step a request makes due (schedule::step_now).
#pragma once

#include <poll.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/replica/control_socket.h"
#include "lib/replica/replicate_schedule.h"
#include "lib/replica/sync_waiters.h"

namespace walship {

class ControlChannels {
 public:
  // Database `e` will listen at `path` once it started. Throws UsageError
  // (check_control_socket_path(); a live socket only at a path given) before
  // anything is written. A directory's databases are not checked here but
  // when they open: one bad file must not stop the others.
  void add(schedule::Entry& e, const std::string& path, bool check);
  // After a successful step: opens the socket of `e` the first time, once
  // its replicator started (it holds the lease). Returns the error that must
  // stop the start (exit 2): the path is not a socket, another process
  // listens there, two databases share it, or a path given cannot be
  // listened on. Any other failure is logged and leaves `e` without one.
  std::optional<std::string> open(schedule::Entry& e);

  // The descriptors to poll (appended to `fds`), then what they said: new
  // requests are read and registered, and make their database due.
  void add_pollfds(std::vector<pollfd>& fds);
  void handle_polled(const std::vector<pollfd>& fds, int64_t now);

  // Step `step` of `e` ended (`error` empty if it succeeded), after which the
  // replicator covers `covered` (Replicator::covered_change()).
  void step_ended(schedule::Entry& e, const std::string& error, uint64_t step,
                  std::optional<uint32_t> covered, int64_t now);
  // `e` was fenced: every request, waiting or new, is answered "fenced".
  void fenced(schedule::Entry& e, const std::string& error);
  // Syncs past their deadline are answered "timeout".
  void expire(int64_t now);
  // When expire() or a request line's deadline next needs the loop awake.
  std::optional<int64_t> next_due(int64_t now) const;
  // Before the final ship: the requests already queued on the sockets
  // (connected before the stop) wait for it too.
  void take_queued(int64_t now);
  // After the final ship of every database: what it covered gets "ok", the
  // rest an error.
  void stopped();

 private:
  struct Channel {
    std::string path;  // where it listens
    std::unique_ptr<ControlListener> listener;
    std::vector<ControlRequest> snapshots;  // `walship snapshot`s
    SyncWaiters syncs;                      // `walship sync`s
    std::string last_error;                 // of the last step, if it failed: why a sync times out
    std::string fenced;                     // the error that fenced the database
    bool tried = false;                     // opened once, when the replicator first started
  };
  struct Polled {
    schedule::Entry* entry;
    Channel* channel;
    size_t first;  // in the poll set
    size_t count;
  };
  void take_requests(schedule::Entry& e, Channel& c, int64_t now);

  std::map<schedule::Entry*, Channel> m_channels;
  std::vector<Polled> m_polled;  // of the last add_pollfds()
};

}  // namespace walship
