#include <doctest.h>

#include <string>

#include "lib/replica/follow_metrics.h"

using namespace walship;

namespace {

FollowStatus caught_up() {
  FollowStatus s;
  s.db_path = "/data/replica.db";
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
  bool healthy = true;
  const std::string body = format_health(s, 5'000, 10'000, healthy);
  CHECK_FALSE(healthy);
  CHECK(body.find("\"status\":\"lagging\"") != std::string::npos);
}

TEST_CASE("healthz is ok under the lag threshold and names TXID, lag and the last error") {
  FollowStatus s = caught_up();
  s.last_error = "unable to \"get\" x";
  bool healthy = false;
  const std::string body = format_health(s, 2'001'000, 10'000, healthy);
  CHECK(healthy);
  CHECK(body ==
        "{\"status\":\"ok\",\"db\":\"/data/replica.db\",\"txid\":\"000000000000002a\",\"replica_txid\":"
        "\"000000000000002a\",\"lag_seconds\":1.000,\"lag_transactions\":0,\"last_error\":\"unable to "
        "\\\"get\\\" x\"}\n");
  format_health(s, 2'011'000, 10'000, healthy);
  CHECK_FALSE(healthy);
}

TEST_CASE("metrics are Prometheus text: HELP and TYPE once per family, labelled samples") {
  FollowStatus s = caught_up();
  s.storage_gets = 7;
  s.storage_lists = 2;
  s.db_path = "/data/a\"b.db";
  const std::string text = format_metrics(s, 2'000'000);
  CHECK(text.find("# TYPE walship_applied_txid gauge\nwalship_applied_txid{db=\"/data/a\\\"b.db\"} 42\n") !=
        std::string::npos);
  CHECK(text.find("walship_storage_requests_total{db=\"/data/a\\\"b.db\",backend=\"file\",op=\"get\"} 7\n") !=
        std::string::npos);
  CHECK(
      text.find("walship_storage_requests_total{db=\"/data/a\\\"b.db\",backend=\"file\",op=\"list\"} 2\n") !=
      std::string::npos);
  size_t families = 0;
  for (size_t at = text.find("# TYPE "); at != std::string::npos; at = text.find("# TYPE ", at + 1))
    ++families;
  CHECK(families == 13);
  CHECK(text.back() == '\n');
}

TEST_SUITE_END();
