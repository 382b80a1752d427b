#include "lib/replica/control_channels.h"

#include <algorithm>

#include "lib/replica/replicator.h"
#include "lib/util/error.h"
#include "lib/util/log.h"

namespace walship {

namespace {

// A request line still coming is looked at again this soon (its deadline).
constexpr int64_t k_reading_poll_ms = 100;

}  // namespace

void ControlChannels::add(schedule::Entry& e, const std::string& path, bool check) {
  if (check) check_control_socket_path(path, path != default_control_socket_path(e.replicator->db_path()));
  m_channels[&e].path = path;
}

std::optional<std::string> ControlChannels::open(schedule::Entry& e) {
  Channel& c = m_channels[&e];
  if (c.tried || !e.replicator->started()) return std::nullopt;
  c.tried = true;
  const bool given = c.path != default_control_socket_path(e.replicator->db_path());
  try {
    for (const auto& [other, oc] : m_channels) {
      if (other != &e && oc.listener && oc.path == c.path)
        throw UsageError("control socket '" + c.path + "' is given to two databases: give each its own");
    }
    c.listener = std::make_unique<ControlListener>(c.path, e.replicator->db_path());
  } catch (const Error& x) {
    const bool usage = dynamic_cast<const UsageError*>(&x) != nullptr;
    if ((usage || given) && !e.from_directory) return std::string(x.what());
    log(LogLevel::warn, "walship sync and walship snapshot cannot reach this replicate",
        {{"db", e.replicator->db_path()}, {"error", x.what()}});
  }
  return std::nullopt;
}

void ControlChannels::add_pollfds(std::vector<pollfd>& fds) {
  m_polled.clear();
  for (auto& [entry, c] : m_channels) {
    if (!c.listener) continue;
    const std::vector<int> control_fds = c.listener->fds();
    m_polled.push_back({entry, &c, fds.size(), control_fds.size()});
    for (const int fd : control_fds) fds.push_back({fd, POLLIN, 0});
  }
}

void ControlChannels::handle_polled(const std::vector<pollfd>& fds, int64_t now) {
  for (const Polled& p : m_polled) {
    bool ready = p.count > 1;  // a request line still coming has a deadline
    for (size_t i = p.first; i < p.first + p.count; ++i) ready = ready || fds[i].revents != 0;
    if (ready) take_requests(*p.entry, *p.channel, now);
  }
  m_polled.clear();
}

// A snapshot is written by the next step; a sync waits for the step that
// covers what is committed now, which starts at once (or right after the
// running one).
void ControlChannels::take_requests(schedule::Entry& e, Channel& c, int64_t now) {
  for (ControlRequest& request : c.listener->take_requests(now)) {
    if (!c.fenced.empty()) {
      answer(request, "fenced " + c.fenced);
      continue;
    }
    if (e.fatal) {
      answer(request, "error this replicate no longer writes the replica: see its log");
      continue;
    }
    if (request.request.kind == ControlRequestLine::Kind::snapshot) {
      e.replicator->request_snapshot(request.request.replica_url);
      c.snapshots.push_back(std::move(request));
    } else {
      const int64_t deadline = now + request.request.timeout_ms;
      c.syncs.add(std::move(request), e.monitor->commit_counter(), e.steps, deadline);
      e.replicator->request_durable_ack();
    }
    schedule::step_now(e, now);
  }
}

void ControlChannels::step_ended(schedule::Entry& e, const std::string& error, uint64_t step,
                                 std::optional<uint32_t> covered, int64_t now) {
  const auto it = m_channels.find(&e);
  if (it == m_channels.end()) return;
  Channel& c = it->second;
  c.last_error = error;
  c.syncs.step_ended(step, covered);
  if (!c.syncs.empty()) {
    e.replicator->request_durable_ack();
    if (error.empty()) schedule::step_now(e, now);
  }
  if (c.snapshots.empty()) return;
  std::optional<std::string> line = e.replicator->take_snapshot_answer();
  if (!line && !error.empty()) line = "error " + error;
  if (!line) {
    schedule::step_now(e, now);
    return;
  }
  for (ControlRequest& request : c.snapshots) answer(request, *line);
  c.snapshots.clear();
}

void ControlChannels::fenced(schedule::Entry& e, const std::string& error) {
  Channel& c = m_channels[&e];
  c.fenced = error;
  c.syncs.answer_all("fenced " + error);
  for (ControlRequest& request : c.snapshots) answer(request, "error fenced: " + error);
  c.snapshots.clear();
}

void ControlChannels::expire(int64_t now) {
  for (auto& [entry, c] : m_channels) {
    if (c.syncs.next_deadline().value_or(INT64_MAX) > now) continue;
    std::string why = c.last_error;
    if (why.empty()) why = entry->replicator->retrying_error();  // the ship in flight keeps failing
    c.syncs.expire(now, why.empty()
                            ? "not durable in time: the ships of this database are slower than the timeout"
                            : "not durable in time: the replica is failing: " + why);
  }
}

std::optional<int64_t> ControlChannels::next_due(int64_t now) const {
  std::optional<int64_t> next;
  for (const auto& [entry, c] : m_channels) {
    std::optional<int64_t> due = c.syncs.next_deadline();
    if (c.listener && c.listener->reading()) due = std::min(due.value_or(INT64_MAX), now + k_reading_poll_ms);
    if (due) next = std::min(next.value_or(INT64_MAX), *due);
  }
  return next;
}

void ControlChannels::take_queued(int64_t now) {
  for (auto& [entry, c] : m_channels) {
    if (c.listener) take_requests(*entry, c, now);
  }
}

void ControlChannels::stopped() {
  for (auto& [entry, c] : m_channels) {
    for (ControlRequest& request : c.snapshots)
      answer(request, "error replicate stopped before the snapshot");
    c.snapshots.clear();
    // The final ship began after every request arrived.
    if (!entry->fatal) c.syncs.step_ended(entry->steps + 1, entry->replicator->covered_change());
    c.syncs.answer_all(!c.fenced.empty() ? "fenced " + c.fenced
                                         : "error replicate stopped before it was durable: " +
                                               (c.last_error.empty() ? "see its log" : c.last_error));
  }
}

}  // namespace walship
