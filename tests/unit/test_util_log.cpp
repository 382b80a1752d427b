#include <doctest.h>

#include "lib/util/log.h"

using namespace walship;

TEST_CASE("text log lines are key=value, quoting only what needs it") {
  CHECK(
      format_log_line(LogFormat::text, LogLevel::info, "shipped", {{"db", "/data/app.db"}, {"txid", "42"}}) ==
      "level=info msg=\"shipped\" db=/data/app.db txid=42\n");
  CHECK(format_log_line(LogFormat::text, LogLevel::warn, "x",
                        {{"path", "a b"}, {"q", "say \"hi\""}, {"e", ""}}) ==
        "level=warn msg=\"x\" path=\"a b\" q=\"say \\\"hi\\\"\" e=\"\"\n");
}

TEST_CASE("json log lines are one JSON object per line") {
  CHECK(format_log_line(LogFormat::json, LogLevel::error, "bad\nthing", {{"k", "v\\"}}) ==
        "{\"level\":\"error\",\"msg\":\"bad\\nthing\",\"k\":\"v\\\\\"}\n");
}

TEST_CASE("every line can start with its time, RFC 3339 to the millisecond") {
  CHECK(format_log_line(LogFormat::text, LogLevel::info, "x", {{"db", "/a"}}, 1795300384123u) ==
        "time=2026-11-21T22:33:04.123Z level=info msg=\"x\" db=/a\n");
  CHECK(format_log_line(LogFormat::json, LogLevel::info, "x", {}, 1795300384123u) ==
        "{\"time\":\"2026-11-21T22:33:04.123Z\",\"level\":\"info\",\"msg\":\"x\"}\n");
}

TEST_CASE("json values keep their type: numbers, booleans, strings") {
  const uint64_t big = 18446744073709551615u;
  CHECK(format_log_line(LogFormat::json, LogLevel::info, "shipped",
                        {{"txid", "00000000000000a3"},
                         {"pages", 3},
                         {"bytes", big},
                         {"neg", -2},
                         {"full", true},
                         {"lag", 0.25},
                         {"n", std::string("42")}}) ==
        "{\"level\":\"info\",\"msg\":\"shipped\",\"txid\":\"00000000000000a3\",\"pages\":3,"
        "\"bytes\":18446744073709551615,\"neg\":-2,\"full\":true,\"lag\":0.25,\"n\":\"42\"}\n");
  // In text the same values read as before.
  CHECK(format_log_line(LogFormat::text, LogLevel::info, "shipped", {{"pages", 3}, {"full", false}}) ==
        "level=info msg=\"shipped\" pages=3 full=false\n");
}
