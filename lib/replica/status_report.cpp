#include "lib/replica/status_report.h"

#include <nlohmann/json.hpp>

#include "lib/format/keys.h"

namespace walship {

DatabaseHealth database_health(const std::string& db, const std::string& role, bool started,
                               const std::string& last_error, const DatabaseLag& lag, int64_t max_lag_ms) {
  DatabaseHealth h;
  h.db = db;
  h.role = role;
  if (!last_error.empty()) {
    h.status = "failing";
  } else if (!started) {
    h.status = "starting";
  } else {
    h.status = lag.seconds * 1000.0 > static_cast<double>(max_lag_ms) ? "lagging" : "ok";
  }
  h.lag_seconds = lag.seconds;
  h.lag_transactions = lag.transactions;
  h.last_error = last_error;
  return h;
}

std::string render_health(const std::vector<DatabaseHealth>& databases, bool& healthy) {
  healthy = true;
  nlohmann::json list = nlohmann::json::array();
  for (const DatabaseHealth& d : databases) {
    healthy = healthy && d.healthy();
    nlohmann::json replicas = nlohmann::json::array();
    for (const auto& [url, txid] : d.replicas)
      replicas.push_back({{"url", url}, {"txid", format::txid_hex(txid)}});
    // Seconds to the millisecond, as /metrics has them.
    const double lag = static_cast<double>(static_cast<int64_t>(d.lag_seconds * 1000.0 + 0.5)) / 1000.0;
    list.push_back({{"db", d.db},
                    {"role", d.role},
                    {"status", d.status},
                    {"txid", format::txid_hex(d.txid)},
                    {"lag_seconds", lag},
                    {"lag_transactions", d.lag_transactions},
                    {"last_error", d.last_error.empty() ? nlohmann::json() : nlohmann::json(d.last_error)},
                    {"replicas", replicas}});
    if (!d.warnings.empty()) list.back()["warnings"] = d.warnings;
  }
  const nlohmann::json body = {{"status", healthy ? "ok" : "unhealthy"}, {"databases", list}};
  return body.dump() + "\n";
}

void add_storage_metrics(PrometheusText& out, const std::string& db, const std::string& backend,
                         const StorageCounts& counts) {
  for (size_t op = 0; op < k_storage_op_names.size(); ++op) {
    const MetricLabels labels = {{"db", db}, {"backend", backend}, {"op", k_storage_op_names[op]}};
    out.counter("walship_storage_requests_total",
                "Requests to replica storage (a request retried until it succeeds counts once).", labels,
                counts.requests[op]);
    out.counter("walship_storage_errors_total",
                "Requests to replica storage that failed after their retries.", labels, counts.errors[op]);
  }
  const MetricLabels labels = {{"db", db}, {"backend", backend}};
  out.counter("walship_uploaded_bytes_total", "Bytes written to replica storage.", labels,
              counts.uploaded_bytes);
  out.counter("walship_downloaded_bytes_total", "Bytes read from replica storage.", labels,
              counts.downloaded_bytes);
}

}  // namespace walship
