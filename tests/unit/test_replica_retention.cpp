// Retention golden tests: each tests/unit/golden/retention/<case>.in (a
// policy and generated points) must give exactly <case>.golden (one line per
// point, newest first: keep with its reasons, or remove). Run with
// WALSHIP_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate
// change, then read the diff.
#include <doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lib/config/config.h"
#include "lib/format/keys.h"
#include "lib/replica/retention.h"
#include "lib/util/time.h"

using namespace walship;

namespace {

const std::string k_golden_dir = std::string(WALSHIP_SOURCE_DIR) + "/tests/unit/golden/retention";

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RetentionPolicy parse_policy(std::istringstream& words) {
  RetentionPolicy p;
  std::string key;
  while (words >> key) {
    if (key == "default") {
      p = default_retention_policy();
      continue;
    }
    std::string value;
    REQUIRE(static_cast<bool>(words >> value));
    if (key == "keep-within") {
      p.keep_within_ms = parse_duration_ms(value).value();
      continue;
    }
    const int n = std::stoi(value);
    if (key == "keep-last")
      p.keep_last = n;
    else if (key == "keep-minutely")
      p.keep_minutely = n;
    else if (key == "keep-hourly")
      p.keep_hourly = n;
    else if (key == "keep-daily")
      p.keep_daily = n;
    else if (key == "keep-weekly")
      p.keep_weekly = n;
    else if (key == "keep-monthly")
      p.keep_monthly = n;
    else
      FAIL("unknown policy key " << key);
  }
  return p;
}

// "points every D from TIME count N [snapshot | snapshot-every K]"
void add_points(std::istringstream& words, std::vector<RetentionPoint>& points) {
  std::string every, step, from, start, count;
  int n = 0;
  words >> every >> step >> from >> start >> count >> n;
  REQUIRE(every == "every");
  const int64_t step_ms = parse_duration_ms(step).value();
  const uint64_t start_ms = parse_rfc3339(start).value();
  std::string kind;
  int snapshot_every = 0;
  if (words >> kind) {
    if (kind == "snapshot") snapshot_every = 1;
    if (kind == "snapshot-every") words >> snapshot_every;
  }
  for (int i = 0; i < n; ++i) {
    const uint64_t txid = points.size() + 1;
    points.push_back(
        {txid, start_ms + static_cast<uint64_t>(i * step_ms), snapshot_every > 0 && i % snapshot_every == 0});
  }
}

std::string render(const RetentionDecision& d) {
  std::vector<std::pair<RetentionPoint, bool>> all;
  for (const auto& p : d.keep) all.emplace_back(p, true);
  for (const auto& p : d.remove) all.emplace_back(p, false);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first.txid > b.first.txid; });
  std::string out;
  for (const auto& [p, kept] : all) {
    out += (kept ? "keep   " : "remove ") + format::txid_hex(p.txid) + " " + format_rfc3339(p.time_ms) +
           (p.snapshot ? " snap" : "     ");
    if (kept) {
      std::string reasons;
      for (const std::string& r : d.reasons.at(p.txid)) reasons += (reasons.empty() ? "" : ", ") + r;
      out += "  " + reasons;
    }
    out += "\n";
  }
  return out;
}

std::vector<RetentionPoint> kept_points(const std::vector<RetentionPoint>& points, const RetentionPolicy& p) {
  return apply_policy(points, p).keep;
}

}  // namespace

TEST_CASE("retention decisions match the golden files") {
  int cases = 0;
  for (const auto& entry : std::filesystem::directory_iterator(k_golden_dir)) {
    if (entry.path().extension() != ".in") continue;
    ++cases;
    const std::string name = entry.path().stem().string();
    CAPTURE(name);
    RetentionPolicy policy;
    std::vector<RetentionPoint> points;
    std::istringstream lines(read_text(entry.path().string()));
    std::string line;
    while (std::getline(lines, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream words(line);
      std::string what;
      words >> what;
      if (what == "policy")
        policy = parse_policy(words);
      else if (what == "points")
        add_points(words, points);
      else
        FAIL("unknown line " << line);
    }
    const std::string actual = "# " + describe_policy(policy) + "\n" + render(apply_policy(points, policy));
    const std::string golden_path = k_golden_dir + "/" + name + ".golden";
    if (std::getenv("WALSHIP_UPDATE_GOLDEN")) {
      std::ofstream(golden_path) << actual;
    }
    CHECK(actual == read_text(golden_path));
  }
  CHECK(cases >= 5);
}

TEST_CASE("retention keeps everything an empty policy is asked about only as the newest point") {
  const std::vector<RetentionPoint> points = {{1, 1000, true}, {2, 2000, false}, {3, 3000, false}};
  const RetentionDecision d = apply_policy(points, RetentionPolicy{});
  REQUIRE(d.keep.size() == 1);
  CHECK(d.keep[0].txid == 3);
  CHECK(d.remove.size() == 2);
  CHECK(apply_policy({}, default_retention_policy()).keep.empty());
}

TEST_CASE("applying a policy to what it kept keeps the same points (prune twice removes nothing more)") {
  std::vector<RetentionPoint> points;
  for (uint64_t i = 0; i < 5000; ++i) points.push_back({i + 1, 1'790'000'000'000 + i * 97'000, i % 700 == 0});
  const RetentionPolicy policy = default_retention_policy();
  const std::vector<RetentionPoint> once = kept_points(points, policy);
  CHECK(once.size() < points.size());
  CHECK(kept_points(once, policy) == once);
  // And again after more points arrive: the survivors plus the new points
  // give what all the points ever written would.
  std::vector<RetentionPoint> more = once;
  std::vector<RetentionPoint> all = points;
  for (uint64_t i = 5000; i < 6000; ++i) {
    const RetentionPoint p{i + 1, 1'790'000'000'000 + i * 97'000, false};
    more.push_back(p);
    all.push_back(p);
  }
  CHECK(kept_points(more, policy) == kept_points(all, policy));
}

TEST_CASE("the policy is described the way README and prune --dry-run show it") {
  CHECK(describe_policy(default_retention_policy()) ==
        "keep-within 1h, keep-minutely 60, keep-hourly 24, keep-daily 7, keep-weekly 4, keep-monthly 6");
  CHECK(describe_policy(RetentionPolicy{}) == "no rules");
}
