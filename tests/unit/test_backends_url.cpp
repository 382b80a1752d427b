// Replica URL parsing, redaction and the registry's messages: what a user
// types on the command line and what they read when it is wrong.
#include <doctest.h>

#include <memory>
#include <string>

#include "backends/file/file_storage.h"
#include "backends/gcs/gcs_storage.h"
#include "backends/registry.h"
#include "backends/s3/s3_options.h"
#include "backends/sftp/sftp_storage.h"
#include "backends/url.h"
#include "lib/util/percent_encode.h"

using namespace walship;

namespace {

// The message of the UsageError `fn` throws; fails the test if it throws
// nothing or something else.
template <typename Fn>
std::string usage_error(Fn fn) {
  try {
    fn();
  } catch (const UsageError& e) {
    CHECK(e.code() == ExitCode::usage);
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected a UsageError, got: " << e.what());
  }
  FAIL("expected a UsageError, nothing was thrown");
  return {};
}

std::string open_error(const std::string& url) {
  return usage_error([&] { open_storage(url); });
}

std::string file_root(const std::string& url) {
  std::unique_ptr<Storage> storage = open_storage(url);
  auto* file = dynamic_cast<FileStorage*>(storage.get());
  REQUIRE(file != nullptr);
  return file->root();
}

}  // namespace

TEST_CASE("a full URL parses into decoded parts") {
  const ParsedUrl url = parse_url(
      "sftp://alice:s3cr%40t@backup.example:2222/srv/replicas/app%20db?identity=%2Fhome%2Fa%2F.ssh%2Fid&x");
  CHECK(url.scheme == "sftp");
  CHECK(url.has_authority);
  CHECK(url.user == "alice");
  CHECK(url.password == "s3cr@t");
  CHECK(url.host == "backup.example");
  CHECK(url.port == 2222);
  CHECK(url.path == "/srv/replicas/app db");
  CHECK(url.query == std::map<std::string, std::string>{{"identity", "/home/a/.ssh/id"}, {"x", ""}});
}

TEST_CASE("URL parts are optional and the scheme is case-insensitive") {
  const ParsedUrl s3 = parse_url("S3://my-bucket");
  CHECK(s3.scheme == "s3");
  CHECK(s3.host == "my-bucket");
  CHECK(s3.path.empty());
  CHECK(s3.user.empty());
  CHECK_FALSE(s3.password.has_value());
  CHECK_FALSE(s3.port.has_value());

  const ParsedUrl file = parse_url("file:///var/lib/app");
  CHECK(file.has_authority);
  CHECK(file.host.empty());
  CHECK(file.path == "/var/lib/app");

  const ParsedUrl no_authority = parse_url("file:/var/lib/app");
  CHECK_FALSE(no_authority.has_authority);
  CHECK(no_authority.path == "/var/lib/app");

  const ParsedUrl empty_password = parse_url("sftp://bob:@h/p");
  CHECK(empty_password.user == "bob");
  CHECK(empty_password.password == "");
}

TEST_CASE("hosts may be IPv6 literals and passwords may hold an unescaped '@'") {
  const ParsedUrl v6 = parse_url("sftp://u@[::1]:22/p");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 22);
  CHECK(parse_url("sftp://[fe80::1]/p").host == "fe80::1");

  const ParsedUrl at = parse_url("sftp://u:p@ss@h/x");
  CHECK(at.user == "u");
  CHECK(at.password == "p@ss");
  CHECK(at.host == "h");
  CHECK(at.path == "/x");
}

TEST_CASE("query parameters are decoded; empty ones skipped, the last of a name wins") {
  const ParsedUrl url = parse_url(
      "s3://b/p?endpoint=http%3A%2F%2F127.0.0.1%3A9000&&path-style=true&region=x&region=us-east-1&a+b=c+d");
  CHECK(url.query == std::map<std::string, std::string>{{"endpoint", "http://127.0.0.1:9000"},
                                                        {"path-style", "true"},
                                                        {"region", "us-east-1"},
                                                        {"a+b", "c+d"}});
  CHECK(url.path == "/p");
}

TEST_CASE("malformed URLs are usage errors that name the URL and the problem") {
  CHECK(usage_error([] { parse_url("no-scheme"); }) ==
        "invalid URL 'no-scheme': missing scheme (expected scheme://...)");
  CHECK(usage_error([] { parse_url("s3://b:abc/p"); }) == "invalid URL 's3://b:abc/p': bad port 'abc'");
  CHECK(usage_error([] { parse_url("s3://b:0/p"); }) ==
        "invalid URL 's3://b:0/p': bad port '0': must be 1 to 65535");
  CHECK(usage_error([] { parse_url("s3://b:65536/p"); }).find("must be 1 to 65535") != std::string::npos);
  CHECK(usage_error([] { parse_url("s3://b:/p"); }) == "invalid URL 's3://b:/p': bad port ''");
  CHECK(usage_error([] { parse_url("file:///a%zz"); }) ==
        "invalid URL 'file:///a%zz': bad percent-escape '%zz' in path");
  CHECK(usage_error([] { parse_url("file:///a%2"); }).find("must be followed by two hex digits") !=
        std::string::npos);
  CHECK(usage_error([] { parse_url("file:///a%00b"); }).find("NUL is not allowed") != std::string::npos);
  CHECK(usage_error([] { parse_url("sftp://[::1/p"); }).find("unterminated '['") != std::string::npos);
  CHECK(usage_error([] { parse_url("sftp://[::1]x/p"); }).find("unexpected text after ']'") !=
        std::string::npos);
  CHECK(usage_error([] { parse_url("file:///a#b"); }) ==
        "invalid URL 'file:///a#b': fragments ('#') are not supported: write '#' as %23");
  CHECK(usage_error([] { parse_url("://x"); }).find("missing scheme") != std::string::npos);
  CHECK(usage_error([] { parse_url("1s3://x"); }).find("missing scheme") != std::string::npos);
}

TEST_CASE("errors about a malformed URL never show its password") {
  const std::string message = usage_error([] { parse_url("sftp://u:hunter2@h:bad/x"); });
  CHECK(message == "invalid URL 'sftp://u:***@h:bad/x': bad port 'bad'");
  CHECK(open_error("ftp://u:hunter2@h/x").find("hunter2") == std::string::npos);
  CHECK(open_error("s3://b/p?secret=hunter2").find("hunter2") == std::string::npos);
}

TEST_CASE("percent-encoding keeps unreserved bytes and optionally '/'") {
  CHECK(percent_encode("/tmp/my dir/\xc3\xbc~_.-", "/") == "/tmp/my%20dir/%C3%BC~_.-");
  CHECK(percent_encode("a/b?c") == "a%2Fb%3Fc");
  CHECK(percent_decode(percent_encode("any thing/%?#&="), "test") == "any thing/%?#&=");
}

TEST_CASE("redaction hides passwords and secret-looking query values") {
  CHECK(redact_url("sftp://alice:hunter2@host/path") == "sftp://alice:***@host/path");
  CHECK(redact_url("sftp://alice:p@ss@host:22/path") == "sftp://alice:***@host:22/path");
  CHECK(redact_url("sftp://alice@host/path") == "sftp://alice@host/path");
  CHECK(redact_url("s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1") ==
        "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1");
  CHECK(redact_url("s3://b/p?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F1&token=t&Secret_Access_Key=s&"
                   "PASSWORD=pw&access%5Fkey=k&region=eu") ==
        "s3://b/p?X-Amz-Signature=***&X-Amz-Credential=***&token=***&Secret_Access_Key=***&"
        "PASSWORD=***&access%5Fkey=***&region=eu");
  CHECK(redact_url("https://u:p@h/x?password=1&flag&key=#frag") ==
        "https://u:***@h/x?password=***&flag&key=***#frag");
  // Only the authority holds credentials: '@' and ':' in the path are data.
  CHECK(redact_url("s3://bucket/a:b@c") == "s3://bucket/a:b@c");
  CHECK(redact_url("sftp://[::1]:22/p") == "sftp://[::1]:22/p");
}

TEST_CASE("redaction never throws, whatever it is given") {
  CHECK(redact_url("") == "");
  CHECK(redact_url("/abs/path") == "/abs/path");
  CHECK(redact_url("relative") == "relative");
  CHECK(redact_url("x:%%?key=v&%zz=1") == "x:%%?key=***&%zz=1");
  CHECK(redact_url("s3://@") == "s3://@");
  CHECK(redact_url("s3://:@") == "s3://:***@");
  CHECK(redact_url("s3://?") == "s3://?");
  CHECK(redact_url("s3:") == "s3:");
}

TEST_CASE("object keys are relative paths without empty, '.' or '..' segments") {
  for (const char* good :
       {"a", "snapshots/0000000000000001.snap", ".hidden", "a..b", "a/b/c", "..a", "a.."}) {
    CAPTURE(good);
    CHECK(is_valid_object_key(good));
  }
  for (const char* bad : {"", "/a", "a/", "a//b", "..", "../a", "a/../b", "a/..", ".", "./a", "a/./b"}) {
    CAPTURE(bad);
    CHECK_FALSE(is_valid_object_key(bad));
  }
  CHECK_FALSE(is_valid_object_key(std::string("a\0b", 3)));
  CHECK_THROWS_WITH_AS(
      check_object_key("../x", "file:///r"),
      "invalid object key '../x' for 'file:///r': keys are relative, '/'-separated, without empty, "
      "'.' or '..' segments",
      Failure);
}

TEST_CASE("file URLs and plain absolute paths open the file backend") {
  CHECK(file_root("file:///var/lib/replica") == "/var/lib/replica");
  CHECK(file_root("file://localhost/var/lib/replica/") == "/var/lib/replica");
  CHECK(file_root("FILE:///var/lib/replica") == "/var/lib/replica");
  CHECK(file_root("file:/var/lib/replica") == "/var/lib/replica");
  CHECK(file_root("file:///var/lib/my%20replica") == "/var/lib/my replica");
  // A path is taken literally: '%' in it is not an escape.
  CHECK(file_root("/var/lib/50%25 off") == "/var/lib/50%25 off");
  CHECK(open_storage("/var/lib/my replica")->url() == "file:///var/lib/my%20replica");
  CHECK(file_root(open_storage("/var/lib/my replica")->url()) == "/var/lib/my replica");
}

TEST_CASE("a relative path or a name is not a replica URL") {
  const std::string forms =
      "use file:///absolute/path, s3://bucket/prefix, gs://bucket/prefix or sftp://user@host/path";
  CHECK(open_error("foo") == "invalid replica URL 'foo': " + forms);
  CHECK(open_error("backups/app") == "invalid replica URL 'backups/app': " + forms);
  CHECK(open_error("./app") == "invalid replica URL './app': " + forms);
  CHECK(open_error("") == "invalid replica URL '': " + forms);
  CHECK(open_error("./a:b") == "invalid URL './a:b': missing scheme (expected scheme://...); " + forms);
}

TEST_CASE("file URLs must name this machine, an absolute path and no options") {
  CHECK(open_error("file://backup-host/srv/replica") ==
        "invalid replica URL 'file://backup-host/srv/replica': file:// URLs cannot name a remote host "
        "('backup-host'); use file:///absolute/path for this machine or sftp://user@backup-host/path for "
        "another one");
  CHECK(open_error("file://") ==
        "invalid replica URL 'file://': the path must be absolute; use file:///absolute/path");
  CHECK(open_error("file:relative").find("the path must be absolute") != std::string::npos);
  CHECK(open_error("file:///r?fsync=off") ==
        "invalid replica URL 'file:///r?fsync=off': file:// URLs take no options ('fsync')");
  CHECK(open_error("file://u:pw@localhost/r") ==
        "invalid replica URL 'file://u:***@localhost/r': file:// URLs take no user or port; use "
        "file:///absolute/path");
  CHECK(open_error("file:///a%zz").find("bad percent-escape '%zz'") != std::string::npos);
}

TEST_CASE("settings from the configuration are URL options: checked the same way, never given twice") {
  const StorageSettings region{{"region", "eu-west-1"}};
  CHECK(usage_error([&] { open_storage("file:///r", region); }) ==
        "invalid replica URL 'file:///r': file:// URLs take no options ('region')");
  CHECK(usage_error([&] { open_storage("/r", region); }) ==
        "invalid settings for replica '/r': file replicas take no options ('region')");
  CHECK(usage_error([&] { open_storage("s3://b/p?region=us-east-1", region); }) ==
        "invalid settings for replica 's3://b/p?region=us-east-1': option 'region' is given both in the URL "
        "and in the configuration; keep one");
}

TEST_CASE("unknown schemes say what to use") {
  CHECK(open_error("ftp://host/x") ==
        "unsupported replica URL scheme 'ftp' in 'ftp://host/x': use file://, s3://, gs:// or sftp://");
  CHECK(open_error("HTTP://host/x") ==
        "unsupported replica URL scheme 'http' in 'HTTP://host/x': use file://, s3://, gs:// or sftp://");
}

TEST_CASE("a bucket URL's prefix loses its outer slashes and must be a valid key") {
  CHECK(bucket_url_prefix(parse_url("s3://b/a/b/"), "s3://b/a/b/") == "a/b");
  CHECK(bucket_url_prefix(parse_url("gs://b"), "gs://b").empty());
  CHECK(bucket_url_prefix(parse_url("gs://b///"), "gs://b///").empty());
  CHECK_THROWS_WITH_AS(
      bucket_url_prefix(parse_url("s3://b/a//c"), "s3://b/a//c"),
      "invalid replica URL 's3://b/a//c': the prefix 'a//c' has an empty, '.' or '..' segment", UsageError);
  CHECK_THROWS_AS(bucket_url_prefix(parse_url("gs://b/a/../c"), "gs://b/a/../c"), UsageError);
}

TEST_CASE("option values: booleans are exactly true or false, nothing is empty, in every backend") {
  for (const std::string bad : {"", "1", "yes", "TRUE", "on", "0", "no", "False"}) {
    CAPTURE(bad);
    const std::string url = "s3://bkt/p?insecure-skip-verify=" + bad;
    CHECK(usage_error([&] { s3::parse_s3_url(parse_url(url), url); }) ==
          "invalid option insecure-skip-verify='" + bad + "' for replica '" + url +
              "': expected exactly true or false");
  }
  // Without '=' the query value is empty too: never "on".
  CHECK(usage_error([] {
          s3::parse_s3_url(parse_url("s3://bkt/p?insecure-skip-verify"), "s3://bkt/p");
        }).ends_with("expected exactly true or false"));
  CHECK(
      s3::parse_s3_url(parse_url("s3://bkt/p?insecure-skip-verify=true"), "s3://bkt/p").insecure_skip_verify);
  CHECK_FALSE(s3::parse_s3_url(parse_url("s3://bkt/p?insecure-skip-verify=false"), "s3://bkt/p")
                  .insecure_skip_verify);
  CHECK(*s3::parse_s3_url(parse_url("s3://bkt/p?path-style=true"), "s3://bkt/p").path_style);
  for (const std::string option :
       {"region", "endpoint", "ca-file", "profile", "session-token", "part-size"}) {
    CAPTURE(option);
    const std::string url = "s3://bkt/p?" + option + "=";
    CHECK(usage_error([&] { s3::parse_s3_url(parse_url(url), url); }) ==
          "invalid option " + option + "='' for replica '" + redact_url(url) +
              "': the value is empty; give one or leave the option out");
  }
  for (const std::string option : {"credentials-file", "endpoint", "resumable-threshold"}) {
    const std::string url = "gs://bkt/p?" + option + "=";
    CHECK(usage_error([&] {
            parse_gcs_url(parse_url(url), url);
          }).ends_with("the value is empty; give one or leave the option out"));
  }
  for (const std::string option : {"key", "known-hosts"}) {
    const std::string url = "sftp://u@h/p?" + option + "=";
    CHECK(usage_error([&] {
            parse_sftp_url(parse_url(url), url);
          }).ends_with("the value is empty; give one or leave the option out"));
  }
}

TEST_CASE("walship.toml settings are checked against the backend's options and their types") {
  check_replica_setting("s3://b/p", "part-size", SettingType::integer, "8388608");
  check_replica_setting("s3://b/p", "part-size", SettingType::string, "8388608");
  check_replica_setting("s3://b/p", "path-style", SettingType::boolean, "true");
  check_replica_setting("s3://b/p", "region", SettingType::string, "eu-west-1");
  check_replica_setting("gs://b/p", "upload-chunk-size", SettingType::integer, "262144");
  check_replica_setting("sftp://u@h/p", "known-hosts", SettingType::string, "/k");
  CHECK(usage_error([] {
          check_replica_setting("s3://b/p", "session-token", SettingType::integer, "12345");
        }) == "invalid option session-token=12345 for replica 's3://b/p': give a string (in quotes)");
  CHECK(usage_error([] { check_replica_setting("s3://b/p", "part-size", SettingType::boolean, "true"); }) ==
        "invalid option part-size=true for replica 's3://b/p': give a number of bytes");
  CHECK(usage_error([] {
          check_replica_setting("s3://b/p", "insecure-skip-verify", SettingType::integer, "1");
        }) == "invalid option insecure-skip-verify=1 for replica 's3://b/p': give true or false");
  CHECK(usage_error(
            [] { check_replica_setting("s3://b/p", "insecure-skip-verify", SettingType::string, ""); }) ==
        "invalid option insecure-skip-verify='' for replica 's3://b/p': expected exactly true or false");
  CHECK(usage_error([] {
          check_replica_setting("s3://b/p", "regoin", SettingType::string, "x");
        }).starts_with("unknown option 'regoin' for replica 's3://b/p': s3:// takes endpoint, region,"));
  CHECK(usage_error([] { check_replica_setting("file:///r", "region", SettingType::string, "x"); }) ==
        "unknown option 'region' for replica 'file:///r': file:// takes no options");
  CHECK(usage_error([] {
          check_replica_setting("s3://b/p?secret-access-key=hunter2", "x", SettingType::string, "y");
        }).find("hunter2") == std::string::npos);
}

TEST_CASE("a bucket backend names its replica, its objects and its keys under the prefix") {
  const BucketNames top{"s3", "b", ""};
  const BucketNames nested{"gs", "b", "my apps/db1"};
  CHECK(top.url() == "s3://b");
  CHECK(nested.url() == "gs://b/my%20apps/db1");
  CHECK(top.object_name("snapshots/1") == "snapshots/1");
  CHECK(nested.object_name("snapshots/1") == "my apps/db1/snapshots/1");
  CHECK(nested.object_name("") == "my apps/db1/");
  CHECK(nested.object_url("snapshots/1") == "gs://b/my apps/db1/snapshots/1");
  CHECK(top.key_of("x/y") == "x/y");
  CHECK(nested.key_of("my apps/db1/snapshots/1") == "snapshots/1");
  CHECK_FALSE(nested.key_of("my apps/db10/snapshots/1").has_value());
  CHECK_FALSE(nested.key_of("my apps/db1").has_value());
  CHECK_FALSE(nested.key_of("other").has_value());
}
