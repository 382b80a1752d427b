#include <doctest.h>

#include "lib/config/time_arg.h"

using namespace walship;

TEST_CASE("a point in time on the command line: RFC 3339 or a duration ago") {
  const uint64_t now = 1795300384123u;
  CHECK(parse_time_arg("2026-11-21T22:33:04.123Z", now) == now);
  CHECK(parse_time_arg("15m", now) == now - 15 * 60'000);
  CHECK(parse_time_arg("-15m", now) == now - 15 * 60'000);
  CHECK(parse_time_arg("2h", now) == now - 2 * 3'600'000);
  CHECK(parse_time_arg("7d", now) == now - 7 * 86'400'000u);
  CHECK(parse_time_arg("500ms", now) == now - 500);
  for (const char* bad : {"", "-", "15", "-15", "yesterday", "15x", "--15m", "2026-11-21T22:33:04"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_time_arg(bad, now).has_value());
  }
  CHECK_FALSE(parse_time_arg("99999d", 1000).has_value());  // before 1970
}
