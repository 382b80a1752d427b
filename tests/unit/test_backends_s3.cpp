// The s3:// backend's pure parts. The signer's vector tests (AWS's SigV4
// suite, botocore) are in test_backends_s3_signer.cpp; this file holds a smoke
// test of the signer against the S3 documentation's worked example, and the
// URL options, credentials, XML and error classification. The backend's
// behaviour against a server is in the conformance suite (s3_fixture.h) and
// tests/integration/test_s3.py.
#include <doctest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "backends/s3/aws_credentials.h"
#include "backends/s3/s3_options.h"
#include "backends/s3/s3_signer.h"
#include "backends/s3/s3_storage.h"
#include "backends/s3/s3_xml.h"
#include "lib/util/error.h"
#ifdef WALSHIP_TEST_S3
#include "tests/unit/s3_fixture.h"
#endif

using namespace walship;
using namespace walship::s3;

TEST_CASE("s3 signer: the S3 documentation's GET example signs as published") {
  // "Example: GET Object" of the S3 API reference, "Signature Calculations for
  // the Authorization Header: Transferring Payload in a Single Chunk".
  SigningRequest request;
  request.method = "GET";
  request.canonical_uri = "/test.txt";
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                     {"Range", "bytes=0-9"},
                     {"x-amz-content-sha256", std::string(k_empty_payload_hash)},
                     {"x-amz-date", "20130524T000000Z"}};
  request.payload_hash = std::string(k_empty_payload_hash);
  const std::string creq = canonical_request(request);
  CHECK(creq ==
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(string_to_sign("20130524T000000Z", "us-east-1", "s3", creq) ==
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  const Credentials credentials{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  CHECK(authorization(request, credentials, "us-east-1", "s3", "20130524T000000Z") ==
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_CASE("s3 signer: query pairs are encoded, slashes too, and sorted by encoded name then value") {
  SigningRequest request;
  request.method = "GET";
  request.canonical_uri = "/bucket";
  request.query = {
      {"prefix", "a b/c"}, {"list-type", "2"}, {"continuation-token", "x+y="}, {"b", "2"}, {"b", "1"}};
  request.headers = {{"Host", "h"}};
  request.payload_hash = "UNSIGNED-PAYLOAD";
  CHECK(canonical_request(request) ==
        "GET\n/bucket\nb=1&b=2&continuation-token=x%2By%3D&list-type=2&prefix=a%20b%2Fc\nhost:h\n\nhost\n"
        "UNSIGNED-PAYLOAD");
}

TEST_CASE("s3 signer: header values are trimmed, inner runs collapsed, same names joined in order") {
  SigningRequest request;
  request.method = "PUT";
  request.canonical_uri = "";
  request.headers = {{"My-Header", "  a   b\t c "}, {"host", "h"}, {"my-header", "z"}};
  request.payload_hash = "x";
  CHECK(canonical_request(request) == "PUT\n/\n\nhost:h\nmy-header:a b c,z\n\nhost;my-header\nx");
}

TEST_CASE("s3 signer: uri_encode keeps unreserved bytes and '/' unless asked, hex in upper case") {
  CHECK(uri_encode("aZ09-._~/ é*", false) == "aZ09-._~/%20%C3%A9%2A");
  CHECK(uri_encode("a/b", true) == "a%2Fb");
}

TEST_CASE("s3 signer: SHA-256, streamed or whole, and Content-MD5") {
  CHECK(sha256_hex(std::string_view()) == k_empty_payload_hash);
  Sha256 hash;
  hash.update(std::as_bytes(std::span<const char>("ab", 2)));
  hash.update(std::as_bytes(std::span<const char>("c", 1)));
  CHECK(hash.finish_hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex(std::string_view("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(content_md5("") == "1B2M2Y8AsgTpgAmY7PhCfg==");
}

// ---- URL options ------------------------------------------------------------

namespace {

s3::Options options_of(const std::string& url) { return parse_s3_url(parse_url(url), url); }

std::string usage_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string url_error(const std::string& url) {
  return usage_error([&] { options_of(url); });
}

// An environment and files given as maps, for resolve().
struct World {
  std::map<std::string, std::string> env = {{"HOME", "/home/u"}};
  std::map<std::string, std::string> files;
  s3::Resolved resolve(const std::string& url) const {
    return s3::resolve(
        options_of(url), url,
        [this](const std::string& name) -> std::optional<std::string> {
          const auto it = env.find(name);
          if (it == env.end()) return std::nullopt;
          return it->second;
        },
        [this](const std::string& path) -> std::optional<std::string> {
          const auto it = files.find(path);
          if (it == files.end()) return std::nullopt;
          return it->second;
        });
  }
  std::string error(const std::string& url) const {
    return usage_error([&] { resolve(url); });
  }
};

}  // namespace

TEST_CASE("s3 URLs: bucket, prefix and options") {
  const s3::Options o = options_of(
      "s3://my-bucket/a/b/?endpoint=https://minio.example:9000/&region=eu-west-1&path-style=false&"
      "ca-file=/etc/ca.pem&profile=backup&multipart-threshold=100000000&part-size=6291456");
  CHECK(o.bucket == "my-bucket");
  CHECK(o.prefix == "a/b");
  CHECK(o.endpoint == "https://minio.example:9000");
  CHECK(o.region == "eu-west-1");
  CHECK(o.path_style == false);
  CHECK(o.ca_file == "/etc/ca.pem");
  CHECK(o.profile == "backup");
  CHECK(o.multipart_threshold == 100000000);
  CHECK(o.part_size == 6291456);
  CHECK_FALSE(o.insecure_skip_verify);
  CHECK(options_of("s3://b.with.dots").prefix.empty());
  CHECK(options_of("s3://bkt?insecure-skip-verify=true").insecure_skip_verify);
  const s3::Options keys = options_of("s3://bkt/p?access-key-id=AK&secret-access-key=s%2Fk&session-token=t");
  CHECK(keys.credentials.access_key_id == "AK");
  CHECK(keys.credentials.secret_access_key == "s/k");
  CHECK(keys.credentials.session_token == "t");
}

TEST_CASE("s3 URLs: bad buckets, options and values are usage errors that say what to write") {
  CHECK(url_error("s3:///prefix") == "invalid replica URL 's3:///prefix': no bucket; use s3://bucket/prefix");
  CHECK(url_error("s3://u@bkt/p").find("take no user or port") != std::string::npos);
  CHECK(url_error("s3://bkt:9000/p").find("take no user or port") != std::string::npos);
  CHECK(url_error("s3://b/p").find("'b' is not a bucket name") != std::string::npos);
  CHECK(url_error("s3://bad!bucket/p").find("is not a bucket name") != std::string::npos);
  CHECK(url_error("s3://bkt/a//b").find("empty, '.' or '..' segment") != std::string::npos);
  CHECK(url_error("s3://bkt/p?endpont=x") ==
        "unknown option 'endpont' for replica 's3://bkt/p?endpont=x': s3:// takes endpoint, region, "
        "path-style, "
        "ca-file, insecure-skip-verify, profile, access-key-id, secret-access-key, session-token, "
        "multipart-threshold and part-size");
  CHECK(url_error("s3://bkt/p?endpoint=minio:9000").find("expected http://host[:port]") != std::string::npos);
  CHECK(url_error("s3://bkt/p?endpoint=http://h/path").find("without a path") != std::string::npos);
  CHECK(url_error("s3://bkt/p?path-style=maybe") ==
        "invalid option path-style='maybe' for replica 's3://bkt/p?path-style=maybe': expected exactly true "
        "or false");
  CHECK(url_error("s3://bkt/p?part-size=1048576").find("5 MiB (5242880) to 5 GiB") != std::string::npos);
  CHECK(url_error("s3://bkt/p?multipart-threshold=lots").find("expected a number of bytes") !=
        std::string::npos);
  CHECK(url_error("s3://bkt/p?access-key-id=AK").find("go together") != std::string::npos);
  // Secrets in a URL never reach the message.
  CHECK(url_error("s3://bkt/p?secret-access-key=hunter2").find("hunter2") == std::string::npos);
}

TEST_CASE("s3 resolve: keys from the options, then the environment, then the profile in the files") {
  World world;
  world.env["AWS_ACCESS_KEY_ID"] = "ENVKEY";
  world.env["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  world.env["AWS_SESSION_TOKEN"] = "envtoken";
  world.files["/home/u/.aws/credentials"] =
      "# comment\n[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = file#secret ; note\n"
      "[other]\nAWS_ACCESS_KEY_ID=OTHERKEY\naws_secret_access_key=othersecret\naws_session_token="
      "othertoken\n";

  const s3::Resolved from_options = world.resolve("s3://bkt/p?access-key-id=OPTKEY&secret-access-key=opt");
  CHECK(from_options.credentials.access_key_id == "OPTKEY");
  CHECK(from_options.credentials.session_token.empty());
  CHECK(from_options.credentials_source == "the replica's options");

  const s3::Resolved from_env = world.resolve("s3://bkt/p");
  CHECK(from_env.credentials.access_key_id == "ENVKEY");
  CHECK(from_env.credentials.session_token == "envtoken");
  CHECK(from_env.credentials_source == "the environment");

  // A profile named in the options beats the environment.
  const s3::Resolved named = world.resolve("s3://bkt/p?profile=other");
  CHECK(named.credentials.access_key_id == "OTHERKEY");
  CHECK(named.credentials.session_token == "othertoken");
  CHECK(named.credentials_source == "profile 'other' in /home/u/.aws/credentials");

  world.env.erase("AWS_ACCESS_KEY_ID");
  world.env.erase("AWS_SECRET_ACCESS_KEY");
  const s3::Resolved from_file = world.resolve("s3://bkt/p");
  CHECK(from_file.credentials.access_key_id == "FILEKEY");
  CHECK(from_file.credentials.secret_access_key == "file#secret");
  world.env["AWS_PROFILE"] = "other";
  CHECK(world.resolve("s3://bkt/p").credentials.access_key_id == "OTHERKEY");

  // AWS_SHARED_CREDENTIALS_FILE moves the file; keys may also sit in the config file.
  World moved;
  moved.env["AWS_SHARED_CREDENTIALS_FILE"] = "/etc/walship/aws";
  moved.files["/etc/walship/aws"] = "[default]\naws_access_key_id=MOVED\naws_secret_access_key=s\n";
  CHECK(moved.resolve("s3://bkt/p").credentials.access_key_id == "MOVED");
  World config;
  config.files["/home/u/.aws/config"] = "[profile  ci]\naws_access_key_id=CFG\naws_secret_access_key=s\n";
  CHECK(config.resolve("s3://bkt/p?profile=ci").credentials.access_key_id == "CFG");
}

TEST_CASE("s3 resolve: missing or half keys and unknown profiles are usage errors") {
  World world;
  world.env["AWS_EC2_METADATA_DISABLED"] = "True";
  CHECK(
      world.error("s3://bkt/p").find("no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") !=
      std::string::npos);
  world.env["AWS_ACCESS_KEY_ID"] = "AK";
  CHECK(world.error("s3://bkt/p").find("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") !=
        std::string::npos);
  CHECK(world.error("s3://bkt/p?profile=nope")
            .find("AWS profile 'nope' is in neither /home/u/.aws/credentials") != std::string::npos);
  world.env.erase("AWS_ACCESS_KEY_ID");
  world.files["/home/u/.aws/credentials"] = "[default]\naws_access_key_id=AK\n";
  CHECK(world.error("s3://bkt/p").find("has only half a key pair") != std::string::npos);
}

TEST_CASE("s3 resolve: without keys, roles in the AWS SDKs' order, the instance profile last") {
  World world;
  world.env["AWS_REGION"] = "eu-west-3";
  // Nothing set: the EC2 instance profile, at the address the environment may move.
  s3::Resolved r = world.resolve("s3://bkt/p");
  CHECK(r.role.kind == RoleSource::Kind::instance);
  CHECK(r.role.url == "http://169.254.169.254");
  CHECK(r.credentials_source == "the EC2 instance profile (instance metadata at http://169.254.169.254)");
  world.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:9/";
  CHECK(world.resolve("s3://bkt/p").role.url == "http://127.0.0.1:9");

  // Container credentials: the ECS agent's relative URI, or a full one with a token.
  world.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://169.254.170.23/v1/credentials";
  world.env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = "/var/run/secrets/pod-identity/token";
  r = world.resolve("s3://bkt/p");
  CHECK(r.role.kind == RoleSource::Kind::container);
  CHECK(r.role.url == "http://169.254.170.23/v1/credentials");
  CHECK(r.role.token_file == "/var/run/secrets/pod-identity/token");
  world.env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = "/v2/credentials/abc";
  CHECK(world.resolve("s3://bkt/p").role.url == "http://169.254.170.2/v2/credentials/abc");
  world.env.erase("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  world.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://attacker.example/creds";
  CHECK(world.error("s3://bkt/p").find("names a host other than loopback") != std::string::npos);
  world.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "https://creds.example/v1";
  CHECK(world.resolve("s3://bkt/p").role.kind == RoleSource::Kind::container);
  world.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:8080/creds";
  CHECK(world.resolve("s3://bkt/p").role.kind == RoleSource::Kind::container);

  // A profile's credential_process comes before them.
  world.files["/home/u/.aws/config"] = "[default]\ncredential_process = aws configure export-credentials\n";
  r = world.resolve("s3://bkt/p");
  CHECK(r.role.kind == RoleSource::Kind::process);
  CHECK(r.role.command == "aws configure export-credentials");
  CHECK(r.credentials_source == "the credential_process of AWS profile 'default'");

  // A web identity (EKS IRSA) before that, with STS in the region or where told.
  world.env["AWS_WEB_IDENTITY_TOKEN_FILE"] = "/var/run/secrets/eks/token";
  world.env["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/app";
  r = world.resolve("s3://bkt/p");
  CHECK(r.role.kind == RoleSource::Kind::web_identity);
  CHECK(r.role.url == "https://sts.eu-west-3.amazonaws.com");
  CHECK(r.role.session_name.empty());
  world.env["AWS_ENDPOINT_URL_STS"] = "http://127.0.0.1:8081/";
  world.env["AWS_ROLE_SESSION_NAME"] = "app-1";
  r = world.resolve("s3://bkt/p");
  CHECK(r.role.url == "http://127.0.0.1:8081");
  CHECK(r.role.session_name == "app-1");
  world.env.erase("AWS_ROLE_ARN");
  CHECK(world.error("s3://bkt/p")
            .find("a web identity needs both AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN") !=
        std::string::npos);

  // Keys still win over every role.
  world.env["AWS_ACCESS_KEY_ID"] = "AK";
  world.env["AWS_SECRET_ACCESS_KEY"] = "SK";
  r = world.resolve("s3://bkt/p");
  CHECK(r.role.kind == RoleSource::Kind::none);
  CHECK(r.credentials.access_key_id == "AK");
}

TEST_CASE("s3 role credentials: the answers of IMDS, the container agents, credential_process and STS") {
  const TimedCredentials imds = parse_credentials_json(
      R"({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIA1", "SecretAccessKey": "s",
          "Token": "t", "Expiration": "2026-12-06T21:00:00Z"})",
      "IMDS");
  CHECK(imds.keys.access_key_id == "ASIA1");
  CHECK(imds.keys.session_token == "t");
  CHECK(imds.expires_ms == 1'796'590'800'000);
  const TimedCredentials process = parse_credentials_json(
      R"({"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "s", "SessionToken": "st"})", "a process");
  CHECK(process.keys.session_token == "st");
  CHECK(process.expires_ms == 0);
  CHECK_THROWS_WITH(parse_credentials_json(R"({"Code": "Failure"})", "IMDS"),
                    doctest::Contains("not ready (Code Failure)"));
  CHECK_THROWS_WITH(parse_credentials_json(R"({"AccessKeyId": "AK"})", "x"), doctest::Contains("lack"));
  CHECK_THROWS_WITH(parse_credentials_json("<html>", "x"), doctest::Contains("not a JSON object"));
  CHECK_THROWS_WITH(
      parse_credentials_json(R"({"AccessKeyId": "A", "SecretAccessKey": "s", "Expiration": "soon"})", "x"),
      doctest::Contains("unreadable Expiration 'soon'"));

  const StsCredentials sts = parse_sts_credentials(
      "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
      "<AssumeRoleWithWebIdentityResult><Credentials><SessionToken>tok</SessionToken>"
      "<SecretAccessKey>sec</SecretAccessKey><Expiration>2014-10-24T23:00:23Z</Expiration>"
      "<AccessKeyId>ASIAX</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult>"
      "</AssumeRoleWithWebIdentityResponse>");
  CHECK(sts.access_key_id == "ASIAX");
  CHECK(sts.session_token == "tok");
  CHECK(sts.expiration == "2014-10-24T23:00:23Z");
  CHECK_THROWS_AS(parse_sts_credentials("<ErrorResponse/>"), Failure);
  const auto error = parse_sts_error(
      "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Bad token</Message>"
      "</Error></ErrorResponse>");
  REQUIRE(error);
  CHECK(error->code == "InvalidIdentityToken");
  CHECK(error->message == "Bad token");
  CHECK_FALSE(parse_sts_error("<Error><Code>x</Code></Error>"));

  // Refreshed five minutes ahead, or at half the lifetime of short-lived keys
  // (the one rule of S3 role keys and GCS tokens).
  constexpr uint64_t hour = 3'600'000;
  CHECK_FALSE(http::renewal_due(0, 6 * hour, 6 * hour - 300'001));
  CHECK(http::renewal_due(0, 6 * hour, 6 * hour - 300'000));
  CHECK_FALSE(http::renewal_due(1000, 9000, 4999));
  CHECK(http::renewal_due(1000, 9000, 5000));
  CHECK_FALSE(http::renewal_due(0, 0, 99 * hour));  // keys that never expire
}

TEST_CASE("s3 resolve: region, endpoint and addressing style") {
  World world;
  world.env["AWS_ACCESS_KEY_ID"] = "AK";
  world.env["AWS_SECRET_ACCESS_KEY"] = "s";
  s3::Resolved aws = world.resolve("s3://bkt/p");
  CHECK(aws.region == "us-east-1");
  CHECK(aws.endpoint == "https://s3.us-east-1.amazonaws.com");
  CHECK_FALSE(aws.path_style);
  // A dotted bucket would break the TLS wildcard of a virtual host.
  CHECK(world.resolve("s3://my.bucket/p").path_style);
  CHECK(world.resolve("s3://Legacy_Bucket/p").path_style);

  world.files["/home/u/.aws/config"] = "[default]\nregion = ap-south-1\n";
  CHECK(world.resolve("s3://bkt/p").region == "ap-south-1");
  world.env["AWS_DEFAULT_REGION"] = "eu-north-1";
  CHECK(world.resolve("s3://bkt/p").region == "eu-north-1");
  world.env["AWS_REGION"] = "eu-west-3";
  aws = world.resolve("s3://bkt/p");
  CHECK(aws.region == "eu-west-3");
  CHECK(aws.endpoint == "https://s3.eu-west-3.amazonaws.com");
  CHECK(world.resolve("s3://bkt/p?region=auto").region == "auto");

  world.env["AWS_ENDPOINT_URL"] = "http://minio:9000/";
  s3::Resolved custom = world.resolve("s3://bkt/p");
  CHECK(custom.endpoint == "http://minio:9000");
  CHECK(custom.path_style);
  world.env["AWS_ENDPOINT_URL_S3"] = "https://acct.r2.cloudflarestorage.com";
  custom = world.resolve("s3://bkt/p?path-style=false");
  CHECK(custom.endpoint == "https://acct.r2.cloudflarestorage.com");
  CHECK_FALSE(custom.path_style);
  CHECK(world.resolve("s3://bkt/p?endpoint=http://127.0.0.1:9000").endpoint == "http://127.0.0.1:9000");
  CHECK(world.error("s3://bkt/p?endpoint=http://127.0.0.1:9000&path-style=false")
            .find("path-style=false needs an endpoint with a host name") != std::string::npos);
  world.env["AWS_ENDPOINT_URL_S3"] = "minio:9000";
  CHECK(world.error("s3://bkt/p").find("in AWS_ENDPOINT_URL_S3") != std::string::npos);

  world.env["AWS_CA_BUNDLE"] = "/etc/corp-ca.pem";
  CHECK(world.resolve("s3://bkt/p?endpoint=https://h").ca_file == "/etc/corp-ca.pem");
  CHECK(world.resolve("s3://bkt/p?endpoint=https://h&ca-file=/x.pem").ca_file == "/x.pem");
  // The store's ca-file is for the store: STS is trusted through $AWS_CA_BUNDLE alone.
  CHECK(world.resolve("s3://bkt/p?endpoint=https://h&ca-file=/x.pem").role_ca_file == "/etc/corp-ca.pem");
  world.env.erase("AWS_CA_BUNDLE");
  CHECK(world.resolve("s3://bkt/p?endpoint=https://h&ca-file=/x.pem").role_ca_file.empty());
}

// ---- XML ----------------------------------------------------------------------

TEST_CASE("s3 XML: a ListObjectsV2 page, with or without a namespace") {
  const s3::ListPage page = s3::parse_list_page(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>p/</Prefix>"
      "<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
      "<Contents><Key>p/a&amp;b</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
      "<ETag>&quot;x&quot;</ETag><Size>12</Size></Contents>"
      "<Contents><Key>p/c</Key><Size>0</Size></Contents>"
      "<NextContinuationToken>tok/en==</NextContinuationToken></ListBucketResult>");
  REQUIRE(page.entries.size() == 2);
  CHECK(page.entries[0].key == "p/a&b");
  CHECK(page.entries[0].size == 12);
  CHECK(page.entries[1].size == 0);
  CHECK(page.truncated);
  CHECK(page.next_continuation_token == "tok/en==");
  const s3::ListPage last = s3::parse_list_page(
      "<s3:ListBucketResult xmlns:s3=\"x\"><s3:IsTruncated>false"
      "</s3:IsTruncated></s3:ListBucketResult>");
  CHECK(last.entries.empty());
  CHECK_FALSE(last.truncated);
  CHECK_THROWS_AS(s3::parse_list_page("<html>proxy error</html>"), Failure);
  CHECK_THROWS_AS(s3::parse_list_page("<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents>"
                                      "</ListBucketResult>"),
                  Failure);
}

TEST_CASE("s3 XML: errors, upload ids, delete results and request bodies") {
  const auto error = s3::parse_error(
      "<?xml version=\"1.0\"?><Error><Code>AuthorizationHeaderMalformed</Code><Message>the region is wrong"
      "</Message><Region>eu-west-1</Region><RequestId>1</RequestId></Error>");
  REQUIRE(error);
  CHECK(error->code == "AuthorizationHeaderMalformed");
  CHECK(error->message == "the region is wrong");
  CHECK(error->region == "eu-west-1");
  CHECK_FALSE(s3::parse_error(""));
  CHECK_FALSE(s3::parse_error("<html><body>502 Bad Gateway</body></html>"));
  CHECK_FALSE(s3::parse_error("<Error><Message>no code</Message></Error>"));

  CHECK(s3::parse_upload_id("<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>abc-1"
                            "</UploadId></InitiateMultipartUploadResult>") == "abc-1");
  CHECK_THROWS_AS(s3::parse_upload_id("<InitiateMultipartUploadResult/>"), Failure);

  const auto failures = s3::parse_delete_result(
      "<DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>b</Key><Code>AccessDenied</Code>"
      "<Message>Access Denied</Message></Error></DeleteResult>");
  REQUIRE(failures.size() == 1);
  CHECK(failures[0].key == "b");
  CHECK(failures[0].code == "AccessDenied");
  CHECK(s3::parse_delete_result("<DeleteResult/>").empty());

  CHECK(
      s3::delete_request_body({"p/a<b>&", "p/c"}) ==
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete><Quiet>true</Quiet><Object><Key>p/a&lt;b&gt;&amp;"
      "</Key></Object><Object><Key>p/c</Key></Object></Delete>");
  CHECK(
      s3::complete_multipart_body({{1, "\"e1\""}, {2, "\"e2\""}}) ==
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
      "<ETag>&quot;e1&quot;</ETag></Part><Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part>"
      "</CompleteMultipartUpload>");
}

// ---- retry classification and part sizes -------------------------------------------

TEST_CASE("s3 errors: throttling, timeouts and 5xx are transient; 403, 404 and 501 never") {
  CHECK(s3::is_transient(503, "SlowDown"));
  CHECK(s3::is_transient(400, "RequestTimeout"));
  CHECK(s3::is_transient(500, "InternalError"));
  CHECK(s3::is_transient(429, ""));
  CHECK(s3::is_transient(408, ""));
  CHECK(s3::is_transient(502, ""));
  CHECK(s3::is_transient(200, "InternalError"));  // an error inside a 200 CompleteMultipartUpload
  CHECK_FALSE(s3::is_transient(403, "AccessDenied"));
  CHECK_FALSE(s3::is_transient(403, "SignatureDoesNotMatch"));
  CHECK_FALSE(s3::is_transient(404, "NoSuchBucket"));
  CHECK_FALSE(s3::is_transient(501, "NotImplemented"));
  CHECK_FALSE(s3::is_transient(400, "InvalidArgument"));
  CHECK_FALSE(s3::is_transient(0, "AccessDenied"));
}

TEST_CASE("s3 multipart: parts grow in whole MiB to keep an object within 10000 parts") {
  constexpr uint64_t mib = uint64_t{1} << 20;
  CHECK(s3::part_size_for(200 * mib, 8 * mib) == 8 * mib);
  CHECK(s3::part_size_for(10000 * 8 * mib, 8 * mib) == 8 * mib);
  CHECK(s3::part_size_for(10000 * 8 * mib + 1, 8 * mib) == 9 * mib);
  const uint64_t huge = uint64_t{5} << 40;  // 5 TiB, S3's largest object
  const uint64_t part = s3::part_size_for(huge, 8 * mib);
  CHECK((huge + part - 1) / part <= 10000);
  CHECK(part % mib == 0);
}

// ---- against s3rver ---------------------------------------------------------------
// Behaviour the shared conformance suite does not reach: more than one page of
// listing and of DeleteObjects, multipart failures, and whether
// atomic_put_if_absent() tells the truth.
#ifdef WALSHIP_TEST_S3

namespace {

// Fails after `fail_after` bytes, as a disk error in the middle of a snapshot.
class FailingAfter : public ByteSource {
 public:
  FailingAfter(uint64_t size, uint64_t fail_after) : m_size(size), m_fail_after(fail_after) {}
  uint64_t size() const override { return m_size; }
  size_t read(std::span<std::byte> out) override {
    if (m_pos >= m_fail_after) throw Failure("unable to read 'source': Input/output error");
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), m_fail_after - m_pos));
    std::fill_n(out.begin(), n, std::byte{0x5a});
    m_pos += n;
    return n;
  }
  void rewind() override { m_pos = 0; }

 private:
  uint64_t m_size;
  uint64_t m_fail_after;
  uint64_t m_pos = 0;
};

std::vector<std::string> leftover_uploads(const test::S3TestServer& server) {
  std::vector<std::string> out;
  const std::filesystem::path uploads =
      std::filesystem::path(server.dir()) / "walship-test" / "._S3rver_uploads";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(uploads, ec)) out.push_back(entry.path());
  return out;
}

}  // namespace

TEST_CASE("s3 against s3rver: lists past 1000 keys and removes them in batches of 1000") {
  test::S3PathStyleBackend backend;
  Storage& storage = *backend.storage;
  std::vector<std::string> keys;
  for (int i = 0; i < 1100; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "deltas/L0/%016x.delta", i);
    keys.emplace_back(name);
    MemorySource source(as_bytes(keys.back()));
    storage.put(keys.back(), source);
  }
  const std::vector<ObjectInfo> listed = storage.list("deltas/");
  REQUIRE(listed.size() == 1100);
  for (size_t i = 0; i < keys.size(); ++i) CHECK(listed[i].key == keys[i]);
  CHECK(listed[5].size == keys[5].size());
  keys.emplace_back("deltas/never-written");  // absent keys are ignored
  storage.remove(keys);
  CHECK(storage.list("").empty());
}

TEST_CASE("s3 against s3rver: a multipart upload whose source fails is aborted and leaves nothing") {
  test::S3PathStyleBackend backend;  // multipart from 5 MiB, 5 MiB parts
  Storage& storage = *backend.storage;
  FailingAfter source(uint64_t{23} << 20, uint64_t{17} << 20);
  CHECK_THROWS_WITH_AS(storage.put("snapshots/1.snap", source), doctest::Contains("Input/output error"),
                       Failure);
  CHECK(storage.list("").empty());
  CHECK(leftover_uploads(test::s3_server()).empty());
}

TEST_CASE("s3 against s3rver: atomic_put_if_absent tells whether the store honours If-None-Match") {
  test::S3PathStyleBackend honours;
  CHECK(honours.storage->atomic_put_if_absent());
  test::S3NoConditionalBackend ignores;
  CHECK_FALSE(ignores.storage->atomic_put_if_absent());
  // The fallback still never overwrites what it can see.
  const std::string first_text = "first";
  const std::string second_text = "second";
  MemorySource first(as_bytes(first_text));
  CHECK(ignores.storage->put_if_absent("lease", first));
  MemorySource second(as_bytes(second_text));
  CHECK_FALSE(ignores.storage->put_if_absent("lease", second));
  // The probe objects are gone and never listed.
  CHECK(ignores.storage->list("") == std::vector<ObjectInfo>{{"lease", 5}});
}

#endif
