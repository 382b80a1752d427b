#include <doctest.h>

#include "lib/util/user.h"

using namespace walship;

TEST_CASE("the passwd entry of a uid gives its name and home folder") {
  const char* text =
      "root:x:0:0:root:/root:/bin/bash\n"
      "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
      "backup:x:1000:1000:Backup,,,:/home/backup:/bin/sh";
  CHECK(find_passwd_entry(text, 0)->name == "root");
  CHECK(find_passwd_entry(text, 1000)->name == "backup");
  CHECK(find_passwd_entry(text, 1000)->home == "/home/backup");
  CHECK_FALSE(find_passwd_entry(text, 42).has_value());
}

TEST_CASE("malformed passwd lines are skipped, the first match wins") {
  const char* text =
      "\n"
      "# comment\n"
      "short:x:7\n"
      ":x:7:7::/nowhere:/bin/sh\n"
      "bad:x:7x:7::/bad:/bin/sh\n"
      "good:x:7:7::/good:/bin/sh\n"
      "later:x:7:7::/later:/bin/sh\n";
  REQUIRE(find_passwd_entry(text, 7).has_value());
  CHECK(find_passwd_entry(text, 7)->name == "good");
  CHECK(find_passwd_entry(text, 7)->home == "/good");
  CHECK_FALSE(find_passwd_entry("", 0).has_value());
}
