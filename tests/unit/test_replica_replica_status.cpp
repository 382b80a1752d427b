#include <doctest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "lib/replica/process_metrics.h"
#include "lib/replica/replica_status.h"

using namespace walship;

namespace {

ReplicaProbe shipped_probe() {
  ReplicaProbe p;
  p.db = "/data/app.db";
  p.replica = "file:///backups/app";
  p.local_txid = 7;
  p.replica_empty = false;
  p.replica_txid = 7;
  p.replica_commit_ms = 1'000'000;
  return p;
}

}  // namespace

TEST_CASE("status: ok when everything committed is shipped, however long ago") {
  const ReplicaVerdict v = judge_replica(shipped_probe(), 9'000'000, 10'000);
  CHECK(v.status == "ok");
  CHECK(v.lag_transactions == 0);
  CHECK(v.lag_seconds == 0);
}

TEST_CASE("status: unshipped commits lag since the last ship, lagging past max-lag") {
  ReplicaProbe p = shipped_probe();
  p.unshipped_commits = 3;
  ReplicaVerdict v = judge_replica(p, 1'004'000, 10'000);
  CHECK(v.status == "ok");
  CHECK(v.lag_transactions == 3);
  CHECK(v.lag_seconds == doctest::Approx(4.0));
  v = judge_replica(p, 1'020'000, 10'000);
  CHECK(v.status == "lagging");
  CHECK(v.lag_seconds == doctest::Approx(20.0));
}

TEST_CASE(
    "status: a replica without what this node shipped, an empty one and an unreadable one are unhealthy") {
  ReplicaProbe behind = shipped_probe();
  behind.replica_txid = 5;
  CHECK(judge_replica(behind, 1'000'000, 10'000).status == "behind");
  CHECK(judge_replica(behind, 1'000'000, 10'000).lag_transactions == 2);
  ReplicaProbe empty = shipped_probe();
  empty.replica_empty = true;
  CHECK(judge_replica(empty, 1'000'000, 10'000).status == "empty");
  ReplicaProbe failing = shipped_probe();
  failing.error = "unable to list";
  CHECK(judge_replica(failing, 1'000'000, 10'000).status == "failing");
  // A node that never replicated here (no local state) but whose replica is current.
  ReplicaProbe other = shipped_probe();
  other.local_txid.reset();
  CHECK(judge_replica(other, 1'000'000, 10'000).status == "ok");

  bool healthy = true;
  const nlohmann::json body =
      nlohmann::json::parse(render_status_json({shipped_probe(), behind}, 1'000'000, 10'000, healthy));
  CHECK_FALSE(healthy);
  CHECK(body["status"] == "unhealthy");
  CHECK(body["replicas"][0]["status"] == "ok");
  CHECK(body["replicas"][0]["local_txid"] == "0000000000000007");
  CHECK(body["replicas"][0]["lag_transactions"] == 0);
  CHECK(body["replicas"][0]["last_ship"] == "1970-01-01T00:16:40.000Z");
  CHECK(body["replicas"][1]["status"] == "behind");
  render_status_table({shipped_probe()}, 1'000'000, 10'000, healthy);
  CHECK(healthy);
}

TEST_CASE("process metrics come from /proc/self/stat and /proc/stat's btime") {
  // A command name with spaces and parentheses must not shift the fields.
  const std::string self =
      "4242 (wal ship) (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 1000 123456789 2048 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
  const std::string stat = "cpu  1 2 3\nbtime 1795300000\nprocesses 9\n";
  const std::optional<ProcessStats> s = parse_proc_stat(self, stat, 100, 4096);
  REQUIRE(s);
  CHECK(s->cpu_seconds == doctest::Approx(3.0));                  // (250 + 50) / 100
  CHECK(s->start_time_seconds == doctest::Approx(1795300010.0));  // btime + 1000 / 100
  CHECK(s->resident_bytes == 2048u * 4096u);
  CHECK_FALSE(parse_proc_stat("garbage", stat, 100, 4096));
  CHECK_FALSE(parse_proc_stat(self, "no boot time", 100, 4096));
  // What tells a process from a later one with its pid: state and start.
  const std::optional<PidStat> pid = parse_pid_stat(self);
  REQUIRE(pid);
  CHECK(pid->state == 'S');
  CHECK(pid->start_ticks == 1000u);
  CHECK_FALSE(parse_pid_stat("4242 (x) S 1 2"));
  CHECK_FALSE(parse_pid_stat(""));
  REQUIRE(read_pid_stat(::getpid()));
  CHECK(read_pid_stat(::getpid())->state == 'R');
  CHECK_FALSE(read_pid_stat(0));

  PrometheusText out;
  add_process_metrics(out, *s, "1.2.3");
  const std::string text = out.str();
  CHECK(text.find("walship_build_info{version=\"1.2.3\"} 1\n") != std::string::npos);
  CHECK(text.find("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.000\n") !=
        std::string::npos);
  CHECK(text.find("process_resident_memory_bytes 8388608\n") != std::string::npos);
  CHECK(text.find("process_start_time_seconds 1795300010.000\n") != std::string::npos);
  CHECK(read_process_stats().open_fds >= 3);
}
