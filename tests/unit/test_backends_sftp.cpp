// The sftp:// backend's URL and option handling. Its behaviour against a real
// sshd is in the conformance suite (sftp_fixture.h) and
// tests/integration/test_sftp.py.
#include <doctest.h>
#include <pwd.h>
#include <unistd.h>

#include <string>

#include "backends/registry.h"
#include "backends/sftp/sftp_storage.h"
#include "lib/util/error.h"

using namespace walship;

namespace {

SftpOptions options_of(const std::string& url) { return parse_sftp_url(parse_url(url), url); }

std::string usage_error(const std::string& url) {
  try {
    options_of(url);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("sftp:// URLs name a user, a host, a port and an absolute directory") {
  const SftpOptions o =
      options_of("sftp://alice@backup.example:2222/srv/replicas/app/?key=/k&known-hosts=/kh");
  CHECK(o.user == "alice");
  CHECK(o.host == "backup.example");
  CHECK(o.port == 2222);
  CHECK(o.root == "/srv/replicas/app");
  CHECK(o.key_file == "/k");
  CHECK(o.known_hosts == "/kh");
  CHECK_FALSE(o.password);

  const SftpOptions d = options_of("sftp://h/x");
  CHECK(d.port == 22);
  CHECK(d.user == ::getpwuid(::getuid())->pw_name);  // the local user by default
  CHECK(options_of("sftp://u:p%40ss@[::1]/x").password == "p@ss");
}

TEST_CASE("bad sftp:// URLs and options are usage errors naming the redacted URL") {
  CHECK(usage_error("sftp:///x") ==
        "invalid replica URL 'sftp:///x': no host; use sftp://user@host/absolute/path");
  CHECK(usage_error("sftp://u:secret@h/") ==
        "invalid replica URL 'sftp://u:***@h/': the path must be an absolute directory below '/'; use "
        "sftp://user@host/absolute/path");
  CHECK(usage_error("sftp://h/a/../b").find("'.' or '..'") != std::string::npos);
  CHECK(usage_error("sftp://h/a?identity=/k") ==
        "unknown option 'identity' for replica 'sftp://h/a?identity=/k': sftp:// takes key and known-hosts");
}

TEST_CASE("the url of an sftp:// storage has no password or options and is safe to log") {
  const auto storage = open_storage("sftp://bob:hunter2@example.org:2200/srv/r%20x?known-hosts=/kh");
  CHECK(storage->url() == "sftp://bob@example.org:2200/srv/r%20x");
  CHECK(open_storage("sftp://bob@[::1]/srv")->url() == "sftp://bob@[::1]/srv");
}

TEST_CASE("a key file that does not exist is a usage error before any connection") {
  CHECK_THROWS_WITH_AS(open_storage("sftp://bob@example.invalid/srv?key=/nonexistent/id"),
                       doctest::Contains("unable to read SSH key '/nonexistent/id'"), UsageError);
}
