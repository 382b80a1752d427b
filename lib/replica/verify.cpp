#include "lib/replica/verify.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "lib/format/checksum.h"
#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/db_file.h"
#include "lib/replica/object_stream.h"
#include "lib/replica/replica_listing.h"
#include "lib/replica/restore.h"
#include "lib/replica/restore_plan.h"
#include "lib/replica/snapshot.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/fs.h"
#include "lib/util/parallel.h"
#include "lib/util/progress.h"
#include "lib/util/time.h"

namespace walship {

namespace {

// What reading one object whole proved.
struct ObjectCheck {
  bool header_ok = false;
  format::FileHeader header;
  uint64_t post_checksum = 0;
  std::string error;  // empty: the object is sound
};

// Reads the whole object: frames, trailer, file checksum; the header against
// the key; a snapshot's pages against its whole-database checksum.
ObjectCheck check_object(Storage& storage, const std::string& key, uint64_t size,
                         const format::KeyInfo& info) {
  ObjectCheck check;
  const std::string name = storage.url() + "/" + key;
  try {
    ObjectStream stream(storage, key, size, 2);
    format::ReplicaReader reader(stream, name);
    check.header = reader.header();
    const format::FileHeader& h = check.header;
    const bool snapshot = info.kind == format::ObjectKind::snapshot;
    if ((h.kind == format::FileKind::snapshot) != snapshot) {
      check.error = std::string("the key says ") + (snapshot ? "snapshot" : "delta") + " but the file is a " +
                    (snapshot ? "delta" : "snapshot") + ": objects were renamed or swapped";
      return check;
    }
    if (h.min_txid != info.min_txid || (info.max_txid != 0 && h.max_txid != info.max_txid)) {
      check.error = "the file holds TXIDs " + format::txid_hex(h.min_txid) + ".." +
                    format::txid_hex(h.max_txid) +
                    " but its key says otherwise: objects were renamed or swapped";
      return check;
    }
    check.header_ok = true;
    format::DbChecksum sum;
    std::vector<format::PageRef> frame;
    while (reader.next_frame(frame)) {
      if (snapshot) {
        for (const format::PageRef& page : frame) sum.add(page.pgno, page.data);
      }
    }
    check.post_checksum = reader.trailer().post_checksum;
    if (snapshot && sum.value() != check.post_checksum) {
      check.error = "the snapshot's pages do not hash to the database checksum it carries";
    }
  } catch (const StorageError&) {
    throw;  // could not check: not a finding about the replica
  } catch (const Error& e) {
    check.error = e.what();
  }
  return check;
}

std::string temp_base(const VerifyOptions& options) {
  if (!options.temp_dir.empty()) return options.temp_dir;
  const char* tmp = std::getenv("TMPDIR");
  return tmp && *tmp ? tmp : "/tmp";
}

// Removes a --full scratch directory and what is in it.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& base) {
    std::string pattern = base + "/walship-verify-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw Failure(
          errno_message("unable to create a temp directory in '" + base + "' for verify --full", errno));
    }
    m_path = pattern;
  }
  ~ScratchDir() {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((db() + suffix).c_str());
    ::rmdir(m_path.c_str());
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string db() const { return m_path + "/point.db"; }

 private:
  std::string m_path;
};

uint64_t live_checksum(const std::string& path) {
  check_db_file(path);
  sqlite::Database db(path, SQLITE_OPEN_READONLY);
  db.set_busy_timeout(5000);
  db.exec("BEGIN");
  db.query_int("SELECT count(*) FROM sqlite_schema");  // starts the read transaction
  const auto page_size = static_cast<uint32_t>(db.query_int("PRAGMA main.page_size"));
  format::DbChecksum sum;
  for_each_db_page(db, page_size,
                   [&](uint32_t pgno, std::span<const std::byte> page) { sum.add(pgno, page); });
  db.exec("COMMIT");
  return sum.value();
}

// A point with no snapshot at or before it: one problem for all such points,
// naming the snapshot the oldest deltas start from (missing, as it is not
// listed), not one per point.
template <typename Blame>
void blame_no_snapshot(const ReplicaListing& listing, Blame& blame) {
  const uint64_t first = listing.deltas.empty() ? 0 : listing.deltas.front().min_txid - 1;
  const std::string oldest = listing.snapshots.empty()
                                 ? "there is no snapshot"
                                 : "the oldest is " + format::txid_hex(listing.snapshots.front().txid);
  if (first == 0) {
    blame("snapshots/ (none)", "no snapshot to restore from: " + oldest);
    return;
  }
  blame(format::snapshot_key(first) + " (missing)",
        "snapshot " + format::txid_hex(first) +
            " is missing: the oldest deltas start from it, so no point before the "
            "oldest kept snapshot restores (" +
            oldest + ")");
}

}  // namespace

size_t VerifyReport::broken_points() const {
  return static_cast<size_t>(
      std::count_if(points.begin(), points.end(), [](const VerifyPoint& p) { return !p.ok; }));
}

namespace {

// One run of `walship verify`, in the order of its steps (verify.h).
class Verifier {
 public:
  Verifier(const VerifyOptions& options, Storage& storage, const ReplicaListing& listing)
      : m_options(options),
        m_storage(storage),
        m_listing(listing),
        m_headers([this](const std::string& key) { return header_of(key); }) {
    m_report.replica = storage.url();
    m_report.full = options.full;
  }

  VerifyReport run() {
    read_objects();
    find_points();
    for (auto it = m_point_time.rbegin(); it != m_point_time.rend(); ++it) {
      if (m_options.point && it->first != *m_options.point) continue;
      m_report.points.push_back(check_chain(it->first, it->second));
    }
    if (m_options.full) restore_points();
    if (!m_options.db_path.empty()) compare_live();
    for (auto& [key, problem] : m_problems) {
      std::sort(problem.breaks.begin(), problem.breaks.end());
      m_report.problems.push_back(std::move(problem));
    }
    return std::move(m_report);
  }

 private:
  struct Item {
    std::string key;
    uint64_t size;
    format::KeyInfo info;
  };

  // 1. Every object, read whole, `parallelism` at a time.
  void read_objects() {
    for (const SnapshotEntry& s : m_listing.snapshots)
      m_items.push_back({s.key, s.size, *format::parse_key(s.key)});
    for (const DeltaEntry& d : m_listing.deltas)
      m_items.push_back({d.key, d.size, *format::parse_key(d.key)});
    m_report.snapshots = m_listing.snapshots.size();
    m_report.deltas = m_listing.deltas.size();
    for (const SupersededEntry& o : m_listing.superseded)
      m_report.superseded.push_back({o.key, o.size, o.fence.fence});
    for (const Item& item : m_items) m_report.bytes += item.size;
    std::vector<ObjectCheck> results(m_items.size());
    Progress progress("verify", m_report.bytes, !m_options.quiet);
    parallel_for(m_items.size(), m_options.parallelism, [&](size_t i) {
      results[i] = check_object(m_storage, m_items[i].key, m_items[i].size, m_items[i].info);
      progress.add(m_items[i].size);
    });
    progress.finish();
    for (size_t i = 0; i < m_items.size(); ++i) m_checks.emplace(m_items[i].key, std::move(results[i]));
    for (const auto& [key, check] : m_checks) {
      if (!check.error.empty()) m_problems[key] = {key, check.error, {}};
    }
    m_report.broken_objects = m_problems.size();
  }

  // Planning reads headers from what was read above; a broken object's
  // header is refused, so no plan ever leans on it.
  format::FileHeader header_of(const std::string& key) {
    const ObjectCheck& check = m_checks.at(key);
    if (!check.error.empty()) {
      m_refused = key;
      throw Failure("replica object '" + m_storage.url() + "/" + key + "' is broken: " + check.error);
    }
    return check.header;
  }

  // 2. The restore points: every TXID an object ends at.
  void find_points() {
    for (const Item& item : m_items) {
      const ObjectCheck& check = m_checks.at(item.key);
      uint64_t end = item.info.kind == format::ObjectKind::snapshot ? item.info.min_txid : item.info.max_txid;
      if (end == 0 && check.header_ok) end = check.header.max_txid;
      if (end == 0) continue;  // an L0 whose header is unreadable: its point is unknown
      const uint64_t t = check.header_ok ? check.header.commit_time_ms : 0;
      auto [it, inserted] = m_point_time.emplace(end, t);
      if (!inserted && t != 0 && (it->second == 0 || t < it->second)) it->second = t;
    }
    if (m_options.point && !m_point_time.count(*m_options.point)) {
      throw Failure("TXID " + format::txid_hex(*m_options.point) + " is not a restore point of replica '" +
                    m_storage.url() + "': run walship ls to see them all");
    }
  }

  // 3. One point's chain, link by link.
  VerifyPoint check_chain(uint64_t txid, uint64_t time) {
    VerifyPoint point{txid, time, 0, true, false, ""};
    auto blame = [&](const std::string& key, const std::string& error) {
      point.ok = false;
      if (point.error.empty()) point.error = error;
      auto [p, inserted] = m_problems.try_emplace(key, VerifyProblem{key, error, {}});
      p->second.breaks.push_back(txid);
    };
    try {
      m_refused.clear();
      const std::optional<RestorePlan> plan = plan_partial(m_listing, txid, m_headers);
      if (!plan) {
        blame_no_snapshot(m_listing, blame);
      } else if (plan->txid != txid) {
        blame_short_chain(*plan, txid, blame);
      } else {
        point.objects = 1 + plan->deltas.size();
        check_links(*plan, blame);
      }
    } catch (const StorageError&) {
      throw;
    } catch (const Error& e) {
      blame(m_refused.empty() ? "point " + format::txid_hex(txid) : m_refused, e.what());
    }
    return point;
  }

  // The chain stops short: the next link is missing (or cannot land exactly
  // on this point).
  template <typename Blame>
  void blame_short_chain(const RestorePlan& plan, uint64_t txid, Blame& blame) const {
    const uint64_t gap = plan.txid + 1;
    const bool starts = std::any_of(m_listing.deltas.begin(), m_listing.deltas.end(),
                                    [&](const DeltaEntry& d) { return d.min_txid == gap; });
    if (!starts) {
      blame(format::l0_delta_key(gap) + " (missing)",
            "no object holds TXID " + format::txid_hex(gap) + ": the chain from snapshot " +
                format::txid_hex(plan.snapshot.txid) + " stops at " + format::txid_hex(plan.txid));
    } else {
      blame("point " + format::txid_hex(txid),
            "no chain of deltas from snapshot " + format::txid_hex(plan.snapshot.txid) +
                " ends exactly at this TXID (it stops at " + format::txid_hex(plan.txid) + ")");
    }
  }

  // Each delta of a whole plan follows the one before: TXIDs, checksums,
  // page size.
  template <typename Blame>
  void check_links(const RestorePlan& plan, Blame& blame) const {
    const ObjectCheck& snapshot = m_checks.at(plan.snapshot.key);
    uint64_t post = snapshot.post_checksum;
    uint64_t at = plan.snapshot.txid;
    std::string previous = plan.snapshot.key;
    for (const DeltaEntry& d : plan.deltas) {
      const ObjectCheck& check = m_checks.at(d.key);
      if (check.header.min_txid != at + 1) {
        blame(d.key, "starts at TXID " + format::txid_hex(check.header.min_txid) + " but " + previous +
                         " ends at " + format::txid_hex(at));
        return;
      }
      if (check.header.pre_checksum != post) {
        blame(d.key, "its pre-checksum does not match the post-checksum of " + previous +
                         ", which it follows: the chain is broken (a changed or swapped object)");
        return;
      }
      if (check.header.page_size != snapshot.header.page_size) {
        blame(d.key, "its page size differs from the snapshot's");
        return;
      }
      post = check.post_checksum;
      at = check.header.max_txid;
      previous = d.key;
    }
  }

  // 4. --full: restore each point and run integrity_check.
  void restore_points() {
    const std::string base = temp_base(m_options);
    for (VerifyPoint& point : m_report.points) {
      if (!point.ok) continue;
      ScratchDir scratch(base);
      RestoreOptions restore;
      restore.output_path = scratch.db();
      restore.target.txid = point.txid;
      restore.integrity = IntegrityCheck::full;
      restore.quiet = true;
      restore.parallelism = m_options.parallelism;
      try {
        run_restore(restore, m_storage);
        point.restored = true;
      } catch (const StorageError&) {
        throw;
      } catch (const Error& e) {
        point.ok = false;
        point.error = e.what();
        const std::string key = "point " + format::txid_hex(point.txid);
        auto [p, inserted] = m_problems.try_emplace(key, VerifyProblem{key, e.what(), {}});
        p->second.breaks.push_back(point.txid);
      }
    }
  }

  // 5. --db: the live database against the newest point.
  void compare_live() {
    m_report.db_path = m_options.db_path;
    const auto newest = std::find_if(m_report.points.begin(), m_report.points.end(),
                                     [](const VerifyPoint& p) { return p.ok; });
    const uint64_t live = live_checksum(m_options.db_path);
    if (newest != m_report.points.end()) {
      m_report.db_txid = newest->txid;
      const std::optional<RestorePlan> plan = plan_partial(m_listing, newest->txid, m_headers);
      const std::string last = plan->deltas.empty() ? plan->snapshot.key : plan->deltas.back().key;
      m_report.db_match = m_checks.at(last).post_checksum == live;
    }
    if (!m_report.db_match) {
      m_problems["database"] = {
          "database",
          "database '" + m_options.db_path + "' differs from the replica's newest restorable point" +
              (m_report.db_txid ? " (TXID " + format::txid_hex(m_report.db_txid) + ")" : "") +
              ": is replicate behind, stopped, or pointed at another replica?",
          {}};
    }
  }

  const VerifyOptions& m_options;
  Storage& m_storage;
  const ReplicaListing& m_listing;
  VerifyReport m_report;
  std::vector<Item> m_items;
  std::map<std::string, ObjectCheck> m_checks;      // by key
  std::map<std::string, VerifyProblem> m_problems;  // by key
  std::map<uint64_t, uint64_t> m_point_time;        // txid -> commit time
  std::string m_refused;                            // the broken object header_of() last refused
  HeaderCache m_headers;
};

}  // namespace

VerifyReport run_verify(const VerifyOptions& options, Storage& storage) {
  const ReplicaListing listing = list_replica(storage);
  if (listing.empty()) {
    throw Failure("no replica at '" + storage.url() + "' (nothing found there): check the URL");
  }
  return Verifier(options, storage, listing).run();
}

namespace {

std::string point_list(const std::vector<uint64_t>& txids) {
  std::string out;
  const size_t shown = std::min<size_t>(txids.size(), 8);
  for (size_t i = 0; i < shown; ++i) out += (i ? " " : "") + format::txid_hex(txids[i]);
  if (txids.size() > shown) out += " ... and " + std::to_string(txids.size() - shown) + " more";
  return out;
}

}  // namespace

std::string render_verify_table(const VerifyReport& r) {
  std::string out;
  out += "replica    " + r.replica + "\n";
  out += "objects    " + std::to_string(r.snapshots) + " snapshots, " + std::to_string(r.deltas) +
         " deltas, " + human_bytes(r.bytes) + ": " +
         (r.broken_objects == 0 ? "all read, checksums hold" : std::to_string(r.broken_objects) + " BROKEN") +
         "\n";
  const size_t broken = r.broken_points();
  std::string span;
  if (!r.points.empty()) {
    span = " (" + format_rfc3339(r.points.back().time_ms) + " .. " +
           format_rfc3339(r.points.front().time_ms) + ")";
  }
  out += "points     " + std::to_string(r.points.size() - broken) + " restorable" +
         (broken ? ", " + std::to_string(broken) + " BROKEN" : "") + span + "\n";
  if (r.full) {
    size_t restored = 0;
    for (const VerifyPoint& p : r.points) restored += p.restored ? 1 : 0;
    out += "full       " + std::to_string(restored) + " restored, integrity_check ok\n";
  }
  if (!r.superseded.empty()) {
    const size_t n = r.superseded.size();
    out += "superseded " + std::to_string(n) + (n == 1 ? " object" : " objects") +
           " a fenced writer wrote after a takeover: no restore uses " + (n == 1 ? "it" : "them") +
           ", walship prune deletes " + (n == 1 ? "it" : "them") + "\n";
  }
  if (!r.db_path.empty()) {
    out += "database   " + r.db_path +
           (r.db_match ? " matches TXID " + format::txid_hex(r.db_txid) : " DIFFERS from the newest point") +
           "\n";
  }
  out += std::string("result     ") +
         (r.healthy() ? "OK"
                      : "PROBLEM: " + std::to_string(r.problems.size()) + " problem" +
                            (r.problems.size() == 1 ? "" : "s")) +
         "\n";
  for (const VerifyProblem& p : r.problems) {
    out += "\nbroken  " + p.key + "\n        " + p.error + "\n";
    if (!p.breaks.empty()) {
      out += "        breaks " + std::to_string(p.breaks.size()) + " restore point" +
             (p.breaks.size() == 1 ? "" : "s") + ": " + point_list(p.breaks) + "\n";
    } else if (p.key != "database") {
      out += "        breaks no restore point (another chain covers it)\n";
    }
  }
  return out;
}

std::string render_verify_json(const VerifyReport& r) {
  nlohmann::json points = nlohmann::json::array();
  for (const VerifyPoint& p : r.points) {
    nlohmann::json j = {{"txid", format::txid_hex(p.txid)},
                        {"time", format_rfc3339(p.time_ms)},
                        {"ok", p.ok},
                        {"objects", p.objects}};
    if (r.full) j["restored"] = p.restored;
    if (!p.ok) j["error"] = p.error;
    points.push_back(j);
  }
  nlohmann::json problems = nlohmann::json::array();
  for (const VerifyProblem& p : r.problems) {
    nlohmann::json breaks = nlohmann::json::array();
    for (uint64_t t : p.breaks) breaks.push_back(format::txid_hex(t));
    problems.push_back({{"object", p.key}, {"error", p.error}, {"breaks", breaks}});
  }
  nlohmann::json superseded = nlohmann::json::array();
  for (const VerifySuperseded& o : r.superseded)
    superseded.push_back({{"object", o.key}, {"bytes", o.size}, {"fence", format::txid_hex(o.fence)}});
  nlohmann::json out = {
      {"replica", r.replica},
      {"healthy", r.healthy()},
      {"objects",
       {{"snapshots", r.snapshots}, {"deltas", r.deltas}, {"bytes", r.bytes}, {"broken", r.broken_objects}}},
      {"points", points},
      {"problems", problems},
      {"superseded", superseded}};
  if (!r.db_path.empty()) {
    out["database"] = {{"path", r.db_path}, {"matches", r.db_match}, {"txid", format::txid_hex(r.db_txid)}};
  }
  return out.dump(2) + "\n";
}

}  // namespace walship
