#include "lib/replica/replica_status.h"

#include <fcntl.h>

#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "lib/format/keys.h"
#include "lib/replica/lease.h"
#include "lib/replica/local_state.h"
#include "lib/replica/replica_listing.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/time.h"
#include "lib/wal/wal_scan.h"

namespace walship {

ReplicaVerdict judge_replica(const ReplicaProbe& probe, uint64_t now_ms, int64_t max_lag_ms) {
  ReplicaVerdict v;
  if (!probe.error.empty()) {
    v.status = "failing";
    return v;
  }
  if (probe.replica_empty) {
    v.status = "empty";
    return v;
  }
  if (probe.local_txid && *probe.local_txid > probe.replica_txid) {
    v.status = "behind";
    v.lag_transactions = *probe.local_txid - probe.replica_txid;
    return v;
  }
  v.lag_transactions = probe.unshipped_commits;
  if (probe.unshipped_commits > 0 && now_ms > probe.replica_commit_ms) {
    v.lag_seconds = static_cast<double>(now_ms - probe.replica_commit_ms) / 1000.0;
  }
  v.status = v.lag_seconds * 1000.0 > static_cast<double>(max_lag_ms) ? "lagging" : "ok";
  return v;
}

namespace {

// Whole transactions in the WAL after `shipped` (all of a newer WAL
// generation's); 0 when there is no WAL or it cannot be read.
uint64_t unshipped_commits(const std::string& db_path, const std::optional<ShippedState>& shipped) {
  const std::string wal_path = db_path + "-wal";
  UniqueFd fd(::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  try {
    const std::optional<wal::WalHeader> header = wal::read_wal_header(fd.get(), wal_path);
    if (!header) return 0;
    wal::WalPosition from = wal::WalPosition::start_of(*header);
    if (shipped && shipped->wal.same_generation(*header)) from = shipped->wal;
    return wal::scan_wal(fd.get(), wal_path, *header, from, std::numeric_limits<uint32_t>::max()).commits;
  } catch (const Error&) {
    return 0;  // a WAL being reset under us: the next run tells
  }
}

// What `status` says of the lease.
std::string describe_lease(const std::optional<std::pair<uint64_t, LeaseRecord>>& newest, uint64_t now) {
  if (!newest) return "free";
  const LeaseRecord& r = newest->second;
  if (r.released) return "released by " + r.holder.host + " pid " + std::to_string(r.holder.pid);
  if (static_cast<int64_t>(now) > r.expires_ms) return "expired: " + describe_holder(r);
  return "held by " + describe_holder(r);
}

}  // namespace

ReplicaProbe probe_replica(const std::string& db_path, Storage& storage) {
  ReplicaProbe probe;
  probe.db = db_path;
  probe.replica = storage.url();
  const std::optional<ShippedState> shipped = LocalStateStore(local_state_dir(db_path), storage.url()).load();
  if (shipped) probe.local_txid = shipped->txid;
  probe.unshipped_commits = unshipped_commits(db_path, shipped);
  try {
    const ReplicaListing listing = list_replica(storage);
    probe.replica_empty = listing.empty();
    if (!probe.replica_empty) {
      HeaderCache headers(storage);
      probe.replica_txid = newest_txid(listing, headers);
      if (const auto newest = object_ending_at(listing, headers, probe.replica_txid))
        probe.replica_commit_ms = headers.get(newest->first).commit_time_ms;
    }
    probe.lease = describe_lease(newest_lease_record(storage), now_ms());
  } catch (const Error& e) {
    probe.error = e.what();
  }
  return probe;
}

namespace {

std::string txid_or_dash(std::optional<uint64_t> txid) { return txid ? format::txid_hex(*txid) : "-"; }

}  // namespace

std::string render_status_table(const std::vector<ReplicaProbe>& probes, uint64_t now_ms, int64_t max_lag_ms,
                                bool& healthy) {
  healthy = true;
  std::string out =
      "DATABASE                  REPLICA                         LOCAL TXID        REPLICA TXID      LAG     "
      "    "
      "LAST SHIP                 STATUS\n";
  for (const ReplicaProbe& p : probes) {
    const ReplicaVerdict v = judge_replica(p, now_ms, max_lag_ms);
    healthy = healthy && v.healthy();
    char lag[48];
    std::snprintf(lag, sizeof lag, "%llu tx %.1fs", static_cast<unsigned long long>(v.lag_transactions),
                  v.lag_seconds);
    char line[1024];
    std::snprintf(line, sizeof line, "%-25s %-31s %-17s %-17s %-11s %-25s %s\n", p.db.c_str(),
                  p.replica.c_str(), txid_or_dash(p.local_txid).c_str(),
                  p.replica_empty ? "-" : format::txid_hex(p.replica_txid).c_str(), lag,
                  p.replica_commit_ms ? format_rfc3339(p.replica_commit_ms).c_str() : "-", v.status.c_str());
    out += line;
    if (!p.lease.empty()) out += "  lease: " + p.lease + "\n";
    if (!p.error.empty()) out += "  error: " + p.error + "\n";
  }
  return out;
}

std::string render_status_json(const std::vector<ReplicaProbe>& probes, uint64_t now_ms, int64_t max_lag_ms,
                               bool& healthy) {
  healthy = true;
  nlohmann::json rows = nlohmann::json::array();
  for (const ReplicaProbe& p : probes) {
    const ReplicaVerdict v = judge_replica(p, now_ms, max_lag_ms);
    healthy = healthy && v.healthy();
    rows.push_back(
        {{"db", p.db},
         {"replica", p.replica},
         {"status", v.status},
         {"local_txid", p.local_txid ? nlohmann::json(format::txid_hex(*p.local_txid)) : nlohmann::json()},
         {"replica_txid",
          p.replica_empty ? nlohmann::json() : nlohmann::json(format::txid_hex(p.replica_txid))},
         {"lag_transactions", v.lag_transactions},
         {"lag_seconds", v.lag_seconds},
         {"last_ship",
          p.replica_commit_ms ? nlohmann::json(format_rfc3339(p.replica_commit_ms)) : nlohmann::json()},
         {"lease", p.lease.empty() ? nlohmann::json() : nlohmann::json(p.lease)},
         {"error", p.error.empty() ? nlohmann::json() : nlohmann::json(p.error)}});
  }
  const nlohmann::json body = {{"status", healthy ? "ok" : "unhealthy"}, {"replicas", rows}};
  return body.dump(2) + "\n";
}

}  // namespace walship
