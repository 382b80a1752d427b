// `walship sync` requests waiting for durability (sync_waiters.h): which
// step answers which request, timeouts, the stop, and the control socket's
// request lines (control_socket.h), on socket pairs standing in for clients.
#include <doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/replica/control_socket.h"
#include "lib/replica/sync_waiters.h"

using namespace walship;

namespace {

// One end for the waiters, one for the client that reads the answer.
struct Client {
  UniqueFd mine;
  ControlRequest request;
  Client() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    mine = UniqueFd(fds[0]);
    request.conn = UniqueFd(fds[1]);
  }
  // The answer line, or "" while none came.
  std::string answer() {
    char buffer[256];
    const ssize_t n = ::recv(mine.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }
};

}  // namespace

TEST_CASE("a step covers the requests whose commit counter it reached, wrapping included") {
  CHECK(sync_covered({5, 0}, 1, 5));
  CHECK(sync_covered({5, 0}, 1, 9));
  CHECK_FALSE(sync_covered({5, 0}, 1, 4));
  CHECK_FALSE(sync_covered({5, 0}, 9, std::nullopt));  // the step could not tell
  CHECK(sync_covered({0xfffffffe, 0}, 1, 3));          // the counter wrapped
  CHECK_FALSE(sync_covered({3, 0}, 1, 0xfffffffe));
}

TEST_CASE("without a commit counter, only a step started after the request covers it") {
  CHECK_FALSE(sync_covered({std::nullopt, 4}, 4, 100));  // running when it arrived
  CHECK(sync_covered({std::nullopt, 4}, 5, 100));
  CHECK_FALSE(sync_covered({std::nullopt, 4}, 5, std::nullopt));
}

TEST_CASE("one step answers every request it covers, and only those") {
  SyncWaiters waiters;
  Client a, b, c;
  waiters.add(std::move(a.request), 10, 0, 1000);
  waiters.add(std::move(b.request), 11, 0, 1000);
  waiters.add(std::move(c.request), 20, 0, 1000);
  CHECK(waiters.step_ended(1, 11) == 2);
  CHECK(a.answer() == "ok\n");
  CHECK(b.answer() == "ok\n");
  CHECK(c.answer().empty());
  CHECK(waiters.size() == 1);
  CHECK(waiters.step_ended(2, std::nullopt) == 0);
  CHECK(waiters.step_ended(3, 20) == 1);
  CHECK(c.answer() == "ok\n");
  CHECK(waiters.empty());
}

TEST_CASE("a counter behind one already covered (a rebuilt wal-index) waits for a later step") {
  SyncWaiters waiters;
  Client a;
  CHECK(waiters.step_ended(1, 500) == 0);
  waiters.add(std::move(a.request), 3, 1, 1000);  // the index was rebuilt: its counter starts again
  CHECK(waiters.step_ended(1, 500) == 0);         // not the step that ran when it came
  CHECK(a.answer().empty());
  CHECK(waiters.step_ended(2, 501) == 1);
  CHECK(a.answer() == "ok\n");
}

TEST_CASE("requests past their deadline time out with the reason; the rest wait") {
  SyncWaiters waiters;
  Client a, b;
  waiters.add(std::move(a.request), 10, 0, 100);
  waiters.add(std::move(b.request), 10, 0, 300);
  CHECK(waiters.next_deadline() == 100);
  waiters.expire(99, "slow");
  CHECK(a.answer().empty());
  waiters.expire(100, "the replica is failing: 503");
  CHECK(a.answer() == "timeout the replica is failing: 503\n");
  CHECK(b.answer().empty());
  CHECK(waiters.next_deadline() == 300);
  waiters.answer_all("error replicate stopped");
  CHECK(b.answer() == "error replicate stopped\n");
  CHECK(waiters.empty());
  CHECK_FALSE(waiters.next_deadline());
}

TEST_CASE("request lines: sync with or without a timeout, snapshot, and what is refused") {
  std::string error;
  auto sync = parse_control_request("sync", error);
  REQUIRE(sync);
  CHECK(sync->kind == ControlRequestLine::Kind::sync);
  CHECK(sync->timeout_ms == 5000);
  sync = parse_control_request("sync 250ms", error);
  REQUIRE(sync);
  CHECK(sync->timeout_ms == 250);
  const auto snapshot = parse_control_request("snapshot file:///b/app", error);
  REQUIRE(snapshot);
  CHECK(snapshot->kind == ControlRequestLine::Kind::snapshot);
  CHECK(snapshot->replica_url == "file:///b/app");
  CHECK_FALSE(parse_control_request("sync soon", error));
  CHECK(error.find("invalid timeout 'soon'") != std::string::npos);
  CHECK_FALSE(parse_control_request("sync 0", error));
  CHECK_FALSE(parse_control_request("snapshot ", error));
  CHECK_FALSE(parse_control_request("SYNC", error));
  CHECK(error.find("not a request") != std::string::npos);
}
