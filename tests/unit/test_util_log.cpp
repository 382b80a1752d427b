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
