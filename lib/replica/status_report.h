// What /healthz and /metrics say about one database, whatever its role
// (replicated by `replicate`, followed by `serve-replica`), and the /healthz
// body for a whole process. Pure: the per-role status structs are turned into
// these by replicate_metrics and follow_metrics.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lib/replica/counting_storage.h"
#include "lib/util/prometheus_text.h"

namespace walship {

// Help texts of the families both roles write (a family has one HELP line).
inline constexpr const char* k_help_lag_transactions =
    "replicate: SQLite transactions committed and not yet in every replica; serve-replica: TXIDs on the "
    "replica not yet applied.";
inline constexpr const char* k_help_lag_seconds =
    "replicate: age of the oldest commit not yet in every replica; serve-replica: how far behind the "
    "replica the follower database may be.";
inline constexpr const char* k_help_checkpoints = "Checkpoints of the database's WAL, by mode.";

// One database's entry of the /healthz body.
struct DatabaseHealth {
  std::string db;
  std::string role;    // "replicate" or "serve-replica"
  std::string status;  // "ok", "starting", "lagging", "failing" or (replicate) "fenced"
  uint64_t txid = 0;   // replicate: the lowest TXID its replicas have; follower: the TXID it is at
  double lag_seconds = 0;
  uint64_t lag_transactions = 0;
  std::string last_error;  // empty: none
  // replicate: (replica URL, newest TXID shipped there); serve-replica: the replica and its newest TXID.
  std::vector<std::pair<std::string, uint64_t>> replicas;
  std::vector<std::string> warnings;  // what an operator should know though it is not a failure

  bool healthy() const { return status == "ok"; }
};

// How far behind a database is: transactions and seconds (see each role's *_lag()).
struct DatabaseLag {
  uint64_t transactions = 0;
  double seconds = 0;
};

// An entry without txid and replicas yet. Its status is "ok" unless it is not
// started yet, its last step failed, or the lag is over max_lag_ms.
DatabaseHealth database_health(const std::string& db, const std::string& role, bool started,
                               const std::string& last_error, const DatabaseLag& lag, int64_t max_lag_ms);

// A status shared between the thread that updates it and the HTTP listener.
template <typename Status>
class StatusMonitor {
 public:
  template <typename F>
  void update(F&& f) {
    std::lock_guard lock(m_mutex);
    f(m_status);
  }

 protected:
  mutable std::mutex m_mutex;
  Status m_status;
};

// {"status":"ok"|"unhealthy","databases":[{...}, ...]}, one line; `healthy`
// is true when every database is ("ok" with no databases at all).
std::string render_health(const std::vector<DatabaseHealth>& databases, bool& healthy);

// walship_storage_requests_total and walship_storage_errors_total by op,
// walship_uploaded_bytes_total and walship_downloaded_bytes_total, for one
// database and backend.
void add_storage_metrics(PrometheusText& out, const std::string& db, const std::string& backend,
                         const StorageCounts& counts);

}  // namespace walship
