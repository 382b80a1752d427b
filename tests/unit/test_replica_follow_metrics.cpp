#include <doctest.h>

#include <string>

#include "lib/replica/follow_metrics.h"

using namespace walship;

namespace {

FollowStatus caught_up() {
  FollowStatus s;
  s.db_path = "/data/replica.db";
  s.replica = "file:///backups/app";
  s.backend = "file";
  s.applied_txid = 42;
  s.replica_txid = 42;
  s.applied_commit_ms = 1'000'000;
  s.last_check_ms = 2'000'000;
  return s;
}

}  // namespace

TEST_SUITE_BEGIN("replica/follow_metrics");

TEST_CASE("when caught up, the lag is the age of the last successful check, not of the last commit") {
  const FollowStatus s = caught_up();
  const FollowLag lag = follow_lag(s, 2'000'250);
  CHECK(lag.transactions == 0);
  CHECK(lag.seconds == doctest::Approx(0.25));
}

TEST_CASE("when behind, the lag counts TXIDs and the age of the oldest known unapplied commit") {
  FollowStatus s = caught_up();
  s.replica_txid = 45;
  s.next_commit_ms = 1'990'000;
  const FollowLag lag = follow_lag(s, 2'000'000);
  CHECK(lag.transactions == 3);
  CHECK(lag.seconds == doctest::Approx(10.0));
}

TEST_CASE("a follower that never reached the replica is unhealthy") {
  FollowStatus s;
  const DatabaseHealth h = follow_health(s, 5'000, 10'000);
  CHECK_FALSE(h.healthy());
  CHECK(h.status == "starting");
}

TEST_CASE("a follower is healthy under the lag threshold with no error, and says which it is not") {
  FollowStatus s = caught_up();
  DatabaseHealth h = follow_health(s, 2'001'000, 10'000);
  CHECK(h.healthy());
  CHECK(h.role == "serve-replica");
  CHECK(h.txid == 42);
  CHECK(h.lag_seconds == doctest::Approx(1.0));
  REQUIRE(h.replicas.size() == 1);
  CHECK(h.replicas[0].first == "file:///backups/app");
  CHECK(follow_health(s, 2'011'000, 10'000).status == "lagging");
  s.last_error = "unable to \"get\" x";
  h = follow_health(s, 2'001'000, 10'000);
  CHECK(h.status == "failing");
  CHECK(h.last_error == s.last_error);
}

TEST_CASE("follower metrics are labelled by database, and storage requests by backend and op") {
  FollowStatus s = caught_up();
  s.storage.requests[static_cast<size_t>(StorageOp::get)] = 7;
  s.storage.requests[static_cast<size_t>(StorageOp::list)] = 2;
  s.checkpoints = 3;
  s.db_path = "/data/a\"b.db";
  PrometheusText out;
  add_follow_metrics(out, s, 2'000'000);
  const std::string text = out.str();
  CHECK(text.find("# TYPE walship_applied_txid gauge\nwalship_applied_txid{db=\"/data/a\\\"b.db\"} 42\n") !=
        std::string::npos);
  CHECK(text.find("walship_storage_requests_total{db=\"/data/a\\\"b.db\",backend=\"file\",op=\"get\"} 7\n") !=
        std::string::npos);
  CHECK(
      text.find("walship_storage_requests_total{db=\"/data/a\\\"b.db\",backend=\"file\",op=\"list\"} 2\n") !=
      std::string::npos);
  CHECK(text.find("walship_checkpoints_total{db=\"/data/a\\\"b.db\",mode=\"passive\"} 3\n") !=
        std::string::npos);
  CHECK(text.back() == '\n');
}

TEST_SUITE_END();
