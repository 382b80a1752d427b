#include <doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "lib/replica/replicate_metrics.h"
#include "lib/replica/status_board.h"
#include "lib/replica/status_report.h"
#include "lib/util/listen_address.h"
#include "lib/util/prometheus_text.h"

using namespace walship;

namespace {

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

ReplicateStatus shipping() {
  ReplicateStatus s;
  s.db_path = "/data/app.db";
  s.replicas = {{"file:///backups/app", 12}, {"s3://b/app", 11}};
  s.started = true;
  s.change_known = true;
  s.shipped_change = 100;
  s.wal_change = 100;
  s.last_ok_ms = 1'000'000;
  return s;
}

}  // namespace

TEST_SUITE_BEGIN("replica/status_report");

TEST_CASE("Prometheus text groups samples by family: one HELP and TYPE however many databases add to it") {
  PrometheusText out;
  out.gauge("walship_x", "An x.", {{"db", "/a"}}, 1);
  out.counter("walship_y_total", "A y.", {{"db", "/a"}}, 2);
  out.gauge("walship_x", "An x.", {{"db", "/b\n\"c\\"}}, 3);
  CHECK(out.str() ==
        "# HELP walship_x An x.\n# TYPE walship_x gauge\nwalship_x{db=\"/a\"} 1\n"
        "walship_x{db=\"/b\\n\\\"c\\\\\"} 3\n"
        "# HELP walship_y_total A y.\n# TYPE walship_y_total counter\nwalship_y_total{db=\"/a\"} 2\n");
}

TEST_CASE("a histogram has cumulative buckets, +Inf, a sum and a count") {
  DurationHistogram h;
  h.observe(0.01);
  h.observe(0.3);
  h.observe(100);
  PrometheusText out;
  out.histogram("walship_h_seconds", "H.", {{"db", "/a"}}, DurationHistogram::k_bounds, h.counts, h.sum);
  const std::string text = out.str();
  CHECK(text.find("walship_h_seconds_bucket{db=\"/a\",le=\"0.05\"} 1\n") != std::string::npos);
  CHECK(text.find("walship_h_seconds_bucket{db=\"/a\",le=\"0.25\"} 1\n") != std::string::npos);
  CHECK(text.find("walship_h_seconds_bucket{db=\"/a\",le=\"0.5\"} 2\n") != std::string::npos);
  CHECK(text.find("walship_h_seconds_bucket{db=\"/a\",le=\"60\"} 2\n") != std::string::npos);
  CHECK(text.find("walship_h_seconds_bucket{db=\"/a\",le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("walship_h_seconds_sum{db=\"/a\"} 100.310\n") != std::string::npos);
  CHECK(text.find("walship_h_seconds_count{db=\"/a\"} 3\n") != std::string::npos);
  CHECK(count_of(text, "# TYPE walship_h_seconds histogram") == 1);
}

TEST_CASE(
    "replicate lag counts the commits SQLite counted past the shipped ones, aged from the first one "
    "noticed") {
  ReplicateStatus s = shipping();
  ReplicateLag lag = replicate_lag(s, 2'000'000);
  CHECK(lag.transactions == 0);
  CHECK(lag.seconds == 0);
  s.wal_change = 103;
  s.oldest_unshipped_ms = 1'999'500;
  lag = replicate_lag(s, 2'000'000);
  CHECK(lag.transactions == 3);
  CHECK(lag.seconds == doctest::Approx(0.5));
  // Not noticed (no file event yet): at most as old as the last good step.
  s.oldest_unshipped_ms = 0;
  CHECK(replicate_lag(s, 2'000'000).seconds == doctest::Approx(1000.0));
  // The counter wraps...
  s.shipped_change = 0xffff'fffe;
  s.wal_change = 1;
  CHECK(replicate_lag(s, 2'000'000).transactions == 3);
  // ... and restarts when SQLite rebuilds the index: nothing known pending.
  s.shipped_change = 500;
  s.wal_change = 2;
  CHECK(replicate_lag(s, 2'000'000).transactions == 0);
  // A file event without a commit (an uncommitted transaction's frames) is no lag.
  s = shipping();
  s.oldest_unshipped_ms = 1'999'000;
  CHECK(replicate_lag(s, 2'000'000).seconds == 0);
}

TEST_CASE("a replicated database is healthy once started, without a step error and under the lag limit") {
  ReplicateStatus s = shipping();
  DatabaseHealth h = replicate_health(s, 2'000'000, 1'000);
  CHECK(h.status == "ok");
  CHECK(h.txid == 11);  // the lowest of its replicas
  CHECK(h.replicas.size() == 2);
  s.wal_change = 101;
  s.oldest_unshipped_ms = 1'998'000;
  CHECK(replicate_health(s, 2'000'000, 1'000).status == "lagging");
  CHECK(replicate_health(s, 2'000'000, 5'000).status == "ok");
  s.last_error = "unable to put x: connection refused";
  CHECK(replicate_health(s, 2'000'000, 5'000).status == "failing");
  s = shipping();
  s.started = false;
  CHECK(replicate_health(s, 2'000'000, 5'000).status == "starting");
}

TEST_CASE("replicate metrics: shipped TXID per replica, checkpoints by mode, storage by backend and op") {
  ReplicateStatus s = shipping();
  s.checkpoints_passive = 4;
  s.checkpoints_truncate = 1;
  StorageCounts file;
  file.requests[static_cast<size_t>(StorageOp::put)] = 9;
  file.errors[static_cast<size_t>(StorageOp::put)] = 2;
  file.uploaded_bytes = 4096;
  s.storage = {{"file", file}};
  PrometheusText out;
  add_replicate_metrics(out, s, 2'000'000);
  const std::string text = out.str();
  CHECK(text.find("walship_shipped_txid{db=\"/data/app.db\",replica=\"file:///backups/app\"} 12\n") !=
        std::string::npos);
  CHECK(text.find("walship_checkpoints_total{db=\"/data/app.db\",mode=\"truncate\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("walship_storage_requests_total{db=\"/data/app.db\",backend=\"file\",op=\"put\"} 9\n") !=
        std::string::npos);
  CHECK(text.find("walship_storage_errors_total{db=\"/data/app.db\",backend=\"file\",op=\"put\"} 2\n") !=
        std::string::npos);
  CHECK(text.find("walship_uploaded_bytes_total{db=\"/data/app.db\",backend=\"file\"} 4096\n") !=
        std::string::npos);
}

TEST_CASE("one process's board: every family once, an entry per database, 503 when any is unhealthy") {
  StatusBoard board;
  ReplicateMonitor& rep = board.add_replicate("/nonexistent/app.db");
  rep.update([](ReplicateStatus& s) {
    s.started = true;
    s.replicas = {{"file:///r", 5}};
  });
  FollowMonitor& follow = board.add_follower();
  follow.update([](FollowStatus& s) {
    s.db_path = "/nonexistent/follow.db";
    s.backend = "file";
    s.last_check_ms = 1'000'000;
    s.applied_txid = s.replica_txid = 5;
  });
  bool healthy = true;
  CHECK(nlohmann::json::parse(board.health(1'000'100, 10'000, healthy))["status"] == "starting");
  CHECK_FALSE(healthy);
  board.set_ready();
  const std::string text = board.metrics(1'000'100);
  CHECK(count_of(text, "# TYPE walship_lag_seconds gauge\n") == 1);
  CHECK(count_of(text, "# TYPE walship_storage_requests_total counter\n") == 1);
  CHECK(count_of(text, "walship_lag_seconds{db=") == 2);
  nlohmann::json body = nlohmann::json::parse(board.health(1'000'100, 10'000, healthy));
  CHECK(healthy);
  CHECK(body["status"] == "ok");
  REQUIRE(body["databases"].size() == 2);
  CHECK(body["databases"][0]["role"] == "replicate");
  CHECK(body["databases"][0]["txid"] == "0000000000000005");
  CHECK(body["databases"][0]["last_error"].is_null());
  CHECK(body["databases"][1]["role"] == "serve-replica");
  CHECK(body["databases"][1]["lag_seconds"] == doctest::Approx(0.1));
  rep.update([](ReplicateStatus& s) { s.last_error = "boom"; });
  body = nlohmann::json::parse(board.health(1'000'100, 10'000, healthy));
  CHECK_FALSE(healthy);
  CHECK(body["status"] == "unhealthy");
  CHECK(body["databases"][0]["status"] == "failing");
  CHECK(body["databases"][0]["last_error"] == "boom");
}

TEST_CASE("--http takes numeric addresses only, and says so") {
  CHECK(parse_listen_address("127.0.0.1:9090").host == "127.0.0.1");
  CHECK(parse_listen_address("127.0.0.1:9090").port == 9090);
  CHECK(parse_listen_address("[::1]:80").host == "::1");
  CHECK(parse_listen_address("localhost:1").host == "127.0.0.1");
  CHECK_THROWS_WITH(parse_listen_address("nowhere"),
                    "invalid --http 'nowhere': give an address and port, e.g. 127.0.0.1:9090");
  CHECK_THROWS_WITH(parse_listen_address("1.2.3.4:99999", "'http'"),
                    "invalid 'http' '1.2.3.4:99999': give an address and port, e.g. 127.0.0.1:9090");
  CHECK_THROWS_WITH(parse_listen_address("example.com:80"),
                    "invalid --http 'example.com:80': 'example.com' is not an IP address; give one, e.g. "
                    "127.0.0.1:9090 or [::1]:9090");
}

TEST_SUITE_END();
