#include <doctest.h>

#include "lib/util/time.h"

using namespace walship;

TEST_CASE("RFC 3339 times parse to UTC milliseconds") {
  CHECK(parse_rfc3339("1970-01-01T00:00:00Z") == 0u);
  CHECK(parse_rfc3339("2026-11-21T22:33:04.123Z") == 1795300384123u);
  CHECK(parse_rfc3339("2026-11-21T23:33:04.123+01:00") == 1795300384123u);
  CHECK(parse_rfc3339("2026-11-21t22:33:04.1z") == 1795300384100u);
  CHECK(parse_rfc3339("2026-11-21 22:33:04Z") == 1795300384000u);
}

TEST_CASE("malformed or zone-less times are rejected") {
  for (const char* bad : {"", "yesterday", "2026-11-21", "2026-11-21T22:33:04", "2026-13-01T00:00:00Z",
                          "2026-02-30T00:00:00Z", "2026-11-21T22:33:04.Z", "2026-11-21T22:33:04Zjunk",
                          "2026-11-21T24:00:00Z", "1969-12-31T23:59:59Z"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
}

TEST_CASE("formatting and parsing round trip") {
  for (uint64_t ms : {0ull, 1ull, 951782400000ull, 1795300384123ull, 4102444799999ull}) {
    CAPTURE(ms);
    CHECK(parse_rfc3339(format_rfc3339(ms)) == ms);
  }
  CHECK(format_rfc3339(1795300384123u) == "2026-11-21T22:33:04.123Z");
}
