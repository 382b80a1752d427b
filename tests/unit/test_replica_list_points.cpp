#include <doctest.h>

#include "lib/replica/list_points.h"

using namespace walship;

namespace {

std::vector<RestorePoint> points_at(std::initializer_list<uint64_t> times) {
  std::vector<RestorePoint> points;
  uint64_t txid = times.size();
  for (uint64_t t : times) points.push_back(RestorePoint{txid--, t, "L0", 100, "k"});
  return points;  // newest first, as list_restore_points gives them
}

std::vector<uint64_t> txids(const std::vector<RestorePoint>& points) {
  std::vector<uint64_t> out;
  for (const RestorePoint& p : points) out.push_back(p.txid);
  return out;
}

PointFilter filter(std::optional<uint64_t> since, std::optional<uint64_t> until, std::optional<size_t> last) {
  PointFilter f;
  f.since_ms = since;
  f.until_ms = until;
  f.last = last;
  return f;
}

}  // namespace

TEST_CASE("ls filters: --since and --until bound the commit time, --last keeps the newest") {
  const std::vector<RestorePoint> points = points_at({5000, 4000, 3000, 2000, 1000});
  CHECK(txids(filter_points(points, filter({}, {}, {}))) == std::vector<uint64_t>{5, 4, 3, 2, 1});
  CHECK(txids(filter_points(points, filter({}, {}, 2))) == std::vector<uint64_t>{5, 4});
  CHECK(txids(filter_points(points, filter(3000, {}, {}))) == std::vector<uint64_t>{5, 4, 3});
  CHECK(txids(filter_points(points, filter({}, 2000, {}))) == std::vector<uint64_t>{2, 1});
  CHECK(txids(filter_points(points, filter(2000, 4000, 2))) == std::vector<uint64_t>{4, 3});
  CHECK(filter_points(points, filter(6000, {}, {})).empty());
}

TEST_CASE("the ls table says what a restore fetches, and sums up") {
  PointReport report;
  report.points = points_at({2000, 1000});
  report.points[0].fetch_objects = 2;
  report.points[0].fetch_bytes = 3 * 1024 * 1024;
  report.points[1].fetch_objects = 0;
  report.total_points = 5;
  report.objects = 6;
  report.bytes = 2048;
  const std::string table = render_points_table(report, false);
  CHECK(
      table ==
      "TXID              TIME (UTC)                RESTORE FETCHES\n"
      "0000000000000002  1970-01-01T00:00:02.000Z  2 objects, 3.0 MiB\n"
      "0000000000000001  1970-01-01T00:00:01.000Z  not restorable (run walship verify)\n"
      "2 restore points shown of 5, 1970-01-01T00:00:01.000Z to 1970-01-01T00:00:02.000Z; the replica holds "
      "6 objects, 2.0 KiB\n");
  CHECK(render_points_table(report, true).find("OBJECT    SIZE\n") != std::string::npos);
}
