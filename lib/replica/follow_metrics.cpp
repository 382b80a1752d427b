#include "lib/replica/follow_metrics.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "lib/format/keys.h"

namespace walship {

namespace {

using format::txid_hex;

std::string json_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// Prometheus label values escape backslash, double quote and newline.
std::string label_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

FollowLag follow_lag(const FollowStatus& status, uint64_t now_ms) {
  FollowLag lag;
  lag.transactions =
      status.replica_txid > status.applied_txid ? status.replica_txid - status.applied_txid : 0;
  uint64_t since = status.last_check_ms;
  if (lag.transactions > 0 && status.next_commit_ms != 0) since = std::min(since, status.next_commit_ms);
  lag.seconds = since == 0 || since > now_ms ? 0.0 : static_cast<double>(now_ms - since) / 1000.0;
  return lag;
}

std::string format_metrics(const FollowStatus& status, uint64_t now_ms) {
  const FollowLag lag = follow_lag(status, now_ms);
  const std::string db = "db=\"" + label_escape(status.db_path) + "\"";
  const std::string backend = db + ",backend=\"" + label_escape(status.backend) + "\"";
  std::ostringstream out;
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& labels,
                    const std::string& value) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
        << name << "{" << labels << "} " << value << "\n";
  };
  auto u64 = [](uint64_t v) { return std::to_string(v); };
  metric("walship_replica_txid", "gauge", "Newest TXID known to be shipped to the replica.", db,
         u64(status.replica_txid));
  metric("walship_applied_txid", "gauge", "TXID the follower database is at.", db, u64(status.applied_txid));
  metric("walship_applied_commit_timestamp_seconds", "gauge",
         "Commit time on the writer of the applied TXID (Unix seconds).", db,
         std::to_string(static_cast<double>(status.applied_commit_ms) / 1000.0));
  metric("walship_lag_transactions", "gauge", "TXIDs known on the replica and not yet applied.", db,
         u64(lag.transactions));
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.3f", lag.seconds);
  metric("walship_lag_seconds", "gauge", "How far behind the replica the follower database may be.", db,
         seconds);
  metric("walship_applied_deltas_total", "counter", "Deltas applied, each in one transaction.", db,
         u64(status.applied_deltas));
  metric("walship_applied_pages_total", "counter", "Pages written by applied deltas and re-seeds.", db,
         u64(status.applied_pages));
  metric("walship_reseeds_total", "counter", "Re-seeds from a snapshot after lost continuity on the writer.",
         db, u64(status.reseeds));
  metric("walship_apply_errors_total", "counter", "Replica files that failed to apply (nothing was changed).",
         db, u64(status.apply_errors));
  metric("walship_checkpoints_total", "counter", "PASSIVE checkpoints of the follower database's WAL.", db,
         u64(status.checkpoints));
  metric("walship_downloaded_bytes_total", "counter", "Bytes downloaded from the replica.", backend,
         u64(status.downloaded_bytes));
  out << "# HELP walship_storage_requests_total Requests to the replica's storage.\n"
      << "# TYPE walship_storage_requests_total counter\n"
      << "walship_storage_requests_total{" << backend << ",op=\"get\"} " << status.storage_gets << "\n"
      << "walship_storage_requests_total{" << backend << ",op=\"list\"} " << status.storage_lists << "\n";
  metric("walship_storage_errors_total", "counter", "Failed requests to the replica's storage.", backend,
         u64(status.storage_errors));
  return out.str();
}

std::string format_health(const FollowStatus& status, uint64_t now_ms, int64_t max_lag_ms, bool& healthy) {
  const FollowLag lag = follow_lag(status, now_ms);
  healthy = status.last_check_ms != 0 && lag.seconds * 1000.0 <= static_cast<double>(max_lag_ms);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.3f", lag.seconds);
  std::ostringstream out;
  out << "{\"status\":\"" << (healthy ? "ok" : "lagging") << "\",\"db\":\"" << json_escape(status.db_path)
      << "\",\"txid\":\"" << txid_hex(status.applied_txid) << "\",\"replica_txid\":\""
      << txid_hex(status.replica_txid) << "\",\"lag_seconds\":" << seconds
      << ",\"lag_transactions\":" << lag.transactions << ",\"last_error\":"
      << (status.last_error.empty() ? "null" : "\"" + json_escape(status.last_error) + "\"") << "}\n";
  return out.str();
}

}  // namespace walship
