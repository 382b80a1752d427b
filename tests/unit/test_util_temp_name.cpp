#include <doctest.h>

#include <string>

#include "lib/util/temp_name.h"

using namespace walship;

TEST_CASE("a temp path is a hidden name beside the final one, fresh at each call") {
  const std::string a = temp_path_for("/data/replica/snapshots/1.snap");
  const std::string prefix = "/data/replica/snapshots/.1.snap.walship-tmp-";
  REQUIRE(a.starts_with(prefix));
  CHECK(a.size() == prefix.size() + 16);
  CHECK(a.substr(prefix.size()).find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(temp_path_for("/data/replica/snapshots/1.snap") != a);
  CHECK(temp_path_for("lease").starts_with("./.lease.walship-tmp-"));
}

TEST_CASE("is_temp_name knows the names temp_path_for makes and nothing else") {
  CHECK(is_temp_name(".1.snap.walship-tmp-0123456789abcdef"));
  CHECK(is_temp_name(".lease.walship-tmp-feedface"));
  CHECK_FALSE(is_temp_name("1.snap"));
  CHECK_FALSE(is_temp_name("x.walship-tmp-1"));  // not hidden
  CHECK_FALSE(is_temp_name(".hidden"));
}

TEST_CASE("random_hex gives two lower-case hex digits per byte") {
  CHECK(random_hex(0).empty());
  const std::string h = random_hex(8);
  CHECK(h.size() == 16);
  CHECK(h.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(random_hex(8) != h);
}
