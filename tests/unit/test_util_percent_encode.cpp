#include <doctest.h>

#include <string>

#include "lib/util/percent_encode.h"

using namespace walship;

TEST_CASE("percent_encode leaves the RFC 3986 unreserved characters as they are") {
  const std::string unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
  CHECK(percent_encode(unreserved) == unreserved);
  CHECK(percent_encode(unreserved, "/") == unreserved);
  CHECK(percent_encode("").empty());
}

TEST_CASE("percent_encode writes every other byte as upper-case %XX, one escape per byte") {
  CHECK(percent_encode("a b") == "a%20b");
  CHECK(percent_encode("100%") == "100%25");
  CHECK(percent_encode("%20") == "%2520");  // already-encoded text is encoded again
  CHECK(percent_encode(":/?#[]@!$&'()*+,;=") == "%3A%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D");
  CHECK(percent_encode("\xc3\xa9") == "%C3%A9");  // é, UTF-8 byte by byte
  CHECK(percent_encode(std::string("a\0b", 3)) == "a%00b");
  CHECK(percent_encode(std::string("\xff\x80\x7f\x1f", 4)) == "%FF%80%7F%1F");
}

TEST_CASE("percent_encode keeps the characters of its keep set") {
  CHECK(percent_encode("/tmp/my dir/a", "/") == "/tmp/my%20dir/a");
  CHECK(percent_encode("/tmp/my dir/a") == "%2Ftmp%2Fmy%20dir%2Fa");
  CHECK(percent_encode("a/b:c d", "/:") == "a/b:c%20d");
  CHECK(percent_encode("50%", "%") == "50%");
}
