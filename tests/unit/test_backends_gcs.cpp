// The gs:// backend's pure parts: URL options, base64url, JWT assertions and
// token lifetimes, and how credentials are chosen. The backend's behaviour
// against a server is in the conformance suite (gcs_fixture.h) and
// tests/integration/test_gcs.py.
#include <doctest.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backends/gcs/gcs_auth.h"
#include "backends/gcs/gcs_storage.h"
#include "backends/registry.h"
#include "lib/util/error.h"

using namespace walship;
using namespace walship::gcs;

namespace {

GcsOptions options_of(const std::string& url) { return parse_gcs_url(parse_url(url), url); }

std::string usage_error(const std::string& url) {
  try {
    options_of(url);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string base64url_decode(const std::string& text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    int v = 0;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '-')
      v = 62;
    else
      v = 63;
    buffer = (buffer << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xff);
    }
  }
  return out;
}

// A throwaway RSA key made for the test, as PEM, and its public half.
struct TestKey {
  mbedtls_pk_context pk;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  std::string pem;
  TestKey() {
    mbedtls_pk_init(&pk);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    REQUIRE(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, nullptr, 0) == 0);
    REQUIRE(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) == 0);
    REQUIRE(mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, &drbg, 1024, 65537) == 0);
    std::string buffer(8192, '\0');
    REQUIRE(mbedtls_pk_write_key_pem(&pk, reinterpret_cast<unsigned char*>(buffer.data()), buffer.size()) ==
            0);
    pem = buffer.c_str();
  }
  ~TestKey() {
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    mbedtls_pk_free(&pk);
  }
  TestKey(const TestKey&) = delete;
  TestKey& operator=(const TestKey&) = delete;
};

// Sets an environment variable for the scope, restoring the old value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : m_name(name) {
    if (const char* old = ::getenv(name)) m_old = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (m_old)
      ::setenv(m_name, m_old->c_str(), 1);
    else
      ::unsetenv(m_name);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* m_name;
  std::optional<std::string> m_old;
};

}  // namespace

TEST_CASE("gs:// URLs name a bucket and a prefix; options are checked") {
  const GcsOptions o = options_of("gs://my-bucket/apps/db1/");
  CHECK(o.bucket == "my-bucket");
  CHECK(o.prefix == "apps/db1");
  CHECK(o.endpoint.empty());
  CHECK(o.resumable_threshold == 8u << 20);
  CHECK(options_of("gs://b").prefix.empty());

  const GcsOptions t = options_of(
      "gs://b/p?endpoint=http://127.0.0.1:9000/&credentials-file=/"
      "k.json&resumable-threshold=100&upload-chunk-size="
      "524288");
  CHECK(t.endpoint == "http://127.0.0.1:9000");
  CHECK(t.credentials_file == "/k.json");
  CHECK(t.resumable_threshold == 100);
  CHECK(t.upload_chunk_size == 524288);

  CHECK(usage_error("gs:///p") == "invalid replica URL 'gs:///p': no bucket; use gs://bucket/prefix");
  CHECK(usage_error("gs://u@b/p") ==
        "invalid replica URL 'gs://u@b/p': gs:// URLs take no user or port; use "
        "gs://bucket/prefix");
  CHECK(usage_error("gs://b/p?region=x") ==
        "unknown option 'region' for replica 'gs://b/p?region=x': gs:// takes credentials-file, endpoint, "
        "resumable-threshold and upload-chunk-size");
  CHECK(usage_error("gs://b/p?upload-chunk-size=1000").find("multiple of 262144") != std::string::npos);
  CHECK(usage_error("gs://b/p?resumable-threshold=1k").find("expected a number of bytes") !=
        std::string::npos);
  CHECK(usage_error("gs://b/p?endpoint=localhost:1").find("expected an http:// or https:// URL") !=
        std::string::npos);
  CHECK(usage_error("gs://b/a/../c").find("'.' or '..'") != std::string::npos);
}

TEST_CASE("base64url has no padding and uses the URL alphabet") {
  CHECK(base64url("") == "");
  CHECK(base64url("f") == "Zg");
  CHECK(base64url("fo") == "Zm8");
  CHECK(base64url("foo") == "Zm9v");
  CHECK(base64url("foob") == "Zm9vYg");
  CHECK(base64url("\xfb\xff\xbf") == "-_-_");
}

TEST_CASE("a JWT assertion carries Google's claims and a valid RS256 signature") {
  TestKey key;
  ServiceAccount account{"sa@p.iam.gserviceaccount.com", key.pem, "kid-1", "http://127.0.0.1:1/token"};
  const std::string jwt = make_jwt_assertion(account, k_storage_scope, 1700000000);
  const size_t dot1 = jwt.find('.');
  const size_t dot2 = jwt.find('.', dot1 + 1);
  REQUIRE(dot2 != std::string::npos);
  const auto header = nlohmann::json::parse(base64url_decode(jwt.substr(0, dot1)));
  const auto claims = nlohmann::json::parse(base64url_decode(jwt.substr(dot1 + 1, dot2 - dot1 - 1)));
  CHECK(header == nlohmann::json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", "kid-1"}});
  CHECK(claims["iss"] == "sa@p.iam.gserviceaccount.com");
  CHECK(claims["aud"] == "http://127.0.0.1:1/token");
  CHECK(claims["scope"] == "https://www.googleapis.com/auth/devstorage.read_write");
  CHECK(claims["iat"] == 1700000000);
  CHECK(claims["exp"] == 1700003600);

  const std::string signing_input = jwt.substr(0, dot2);
  const std::string signature = base64url_decode(jwt.substr(dot2 + 1));
  unsigned char hash[32];
  REQUIRE(mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                     reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(),
                     hash) == 0);
  CHECK(mbedtls_pk_verify(&key.pk, MBEDTLS_MD_SHA256, hash, sizeof hash,
                          reinterpret_cast<const unsigned char*>(signature.data()), signature.size()) == 0);

  ServiceAccount broken = account;
  broken.private_key = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
  CHECK_THROWS_WITH_AS(make_jwt_assertion(broken, k_storage_scope, 1),
                       doctest::Contains("invalid private key"), UsageError);
}

TEST_CASE("service-account key files are parsed and bad ones named") {
  const ServiceAccount a = parse_service_account(
      R"({"type":"service_account","client_email":"e@x","private_key":"PEM","private_key_id":"k"})",
      "/k.json");
  CHECK(a.client_email == "e@x");
  CHECK(a.token_uri == "https://oauth2.googleapis.com/token");  // the default when the file has none
  CHECK_THROWS_WITH_AS(parse_service_account("{", "/k.json"),
                       "invalid Google Cloud credentials file '/k.json': not a JSON object", UsageError);
  CHECK_THROWS_WITH_AS(parse_service_account(R"({"type":"authorized_user"})", "/k.json"),
                       doctest::Contains("type 'authorized_user'; use a service-account key"), UsageError);
  CHECK_THROWS_WITH_AS(parse_service_account(R"({"type":"service_account","client_email":"e"})", "/k.json"),
                       "invalid Google Cloud credentials file '/k.json': no \"private_key\" field",
                       UsageError);
}

TEST_CASE("without credentials or a metadata server the error says what to set") {
  ScopedEnv emulator("STORAGE_EMULATOR_HOST", nullptr);
  ScopedEnv key("GOOGLE_APPLICATION_CREDENTIALS", nullptr);
  ScopedEnv metadata("GCE_METADATA_HOST", "127.0.0.1:1");
  http::HttpClient http;
  Credentials credentials(http, "");
  try {
    credentials.authorization_header();
    FAIL("no error");
  } catch (const StorageError& e) {
    CHECK_FALSE(e.transient());
    CHECK(
        std::string(e.what()).starts_with("no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS"));
    CHECK(std::string(e.what()).find("'127.0.0.1:1' did not answer") != std::string::npos);
  }
}

TEST_CASE("a missing credentials file is a usage error naming it") {
  ScopedEnv emulator("STORAGE_EMULATOR_HOST", nullptr);
  CHECK_THROWS_WITH_AS(
      open_storage("gs://b/p?credentials-file=/nonexistent/key.json"),
      doctest::Contains("unable to read Google Cloud credentials file '/nonexistent/key.json'"), UsageError);
}

TEST_CASE("STORAGE_EMULATOR_HOST takes the place of the API and of credentials") {
  ScopedEnv emulator("STORAGE_EMULATOR_HOST", "localhost:9023");
  http::HttpClient http;
  Credentials credentials(http, "/nonexistent/key.json");  // not read: emulators take no auth
  REQUIRE(credentials.emulator());
  CHECK(*credentials.emulator() == "http://localhost:9023");
  CHECK(credentials.authorization_header().empty());
}

namespace {

// An external_account file with `source` as its credential_source and the
// fields of `extra` added (or, with a null value, removed).
std::string external_account_json(const nlohmann::json& source,
                                  const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json doc = {
      {"type", "external_account"},
      {"audience", "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"},
      {"subject_token_type", "urn:ietf:params:oauth:token-type:jwt"},
      {"token_url", "https://sts.googleapis.com/v1/token"},
      {"credential_source", source}};
  for (const auto& [name, value] : extra.items()) {
    if (value.is_null()) {
      doc.erase(name);
    } else {
      doc[name] = value;
    }
  }
  return doc.dump();
}

// `text` holds `part`; `text` is shown when it does not.
#define CHECK_CONTAINS(text, part)                                             \
  do {                                                                         \
    const std::string checked_text = (text);                                   \
    CHECK_MESSAGE(checked_text.find(part) != std::string::npos, checked_text); \
  } while (false)

std::string external_error(const std::string& json) {
  try {
    parse_external_account(json, "/wif.json");
  } catch (const UsageError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("external_account files with a file or a url source are parsed as Google's libraries read them") {
  const ExternalAccount file = parse_external_account(
      external_account_json({{"file", "/var/run/token"}}, {{"token_url", nullptr}}), "/wif.json");
  CHECK(file.audience ==
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k");
  CHECK(file.subject_token_type == "urn:ietf:params:oauth:token-type:jwt");
  CHECK(file.token_url == "https://sts.googleapis.com/v1/token");  // the default
  CHECK(file.source_file == "/var/run/token");
  CHECK(file.source_url.empty());
  CHECK(file.subject_token_field.empty());  // format text by default
  CHECK(file.impersonation_url.empty());

  const ExternalAccount url = parse_external_account(
      external_account_json(
          {{"url", "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01"},
           {"headers", {{"Metadata", "True"}}},
           {"format", {{"type", "json"}, {"subject_token_field_name", "access_token"}}}},
          {{"service_account_impersonation_url",
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
            "sa@p.iam.gserviceaccount.com:"
            "generateAccessToken"},
           {"service_account_impersonation", {{"token_lifetime_seconds", 1800}}}}),
      "/wif.json");
  CHECK(url.source_url == "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01");
  CHECK(url.source_headers == std::vector<std::string>{"Metadata: True"});
  CHECK(url.subject_token_field == "access_token");
  CHECK(url.impersonation_url.ends_with("sa@p.iam.gserviceaccount.com:generateAccessToken"));
  CHECK(url.impersonation_lifetime_seconds == 1800);
  CHECK(credentials_file_type(external_account_json({{"file", "/t"}}), "/wif.json") == "external_account");
}

TEST_CASE("external_account files that walship cannot use are refused, naming the file and the field") {
  CHECK_CONTAINS(external_error(external_account_json({{"file", "/t"}}, {{"type", "service_account"}})),
                 std::string("type 'service_account', expected external_account"));
  CHECK(external_error(external_account_json({{"file", "/t"}}, {{"audience", nullptr}})) ==
        "invalid Google Cloud credentials file '/wif.json': no \"audience\" field");
  CHECK(external_error(external_account_json({{"file", "/t"}}, {{"subject_token_type", nullptr}})) ==
        "invalid Google Cloud credentials file '/wif.json': no \"subject_token_type\" field");
  CHECK_CONTAINS(external_error(external_account_json({{"file", "/t"}}, {{"credential_source", nullptr}})),
                 std::string("no \"credential_source\" object"));
  CHECK_CONTAINS(external_error(external_account_json(nlohmann::json::object())),
                 std::string("credential_source needs exactly one of \"file\" and \"url\""));
  CHECK_CONTAINS(external_error(external_account_json({{"file", "/t"}, {"url", "https://x/t"}})),
                 std::string("exactly one of"));
  CHECK(external_error(external_account_json({{"executable", {{"command", "/bin/token"}}}})) ==
        "unsupported Google Cloud credentials file '/wif.json': executable-sourced credentials "
        "(credential_source.executable) are not supported; use a file or url credential_source");
  CHECK_CONTAINS(
      external_error(external_account_json({{"environment_id", "aws1"}, {"url", "http://169.254.169.254"}})),
      std::string("AWS-sourced credentials"));
  CHECK_CONTAINS(external_error(external_account_json({{"file", "/t"}, {"format", {{"type", "xml"}}}})),
                 std::string("format type 'xml': use text or json"));
  CHECK_CONTAINS(external_error(external_account_json({{"file", "/t"}, {"format", {{"type", "json"}}}})),
                 std::string("needs subject_token_field_name"));
  // Fail closed: a token goes over https, or plain http to this machine only.
  CHECK_CONTAINS(
      external_error(
          external_account_json({{"file", "/t"}}, {{"token_url", "http://sts.example.com/v1/token"}})),
      std::string("token_url 'http://sts.example.com/v1/token' is plain http to another machine; use https"));
  CHECK_CONTAINS(external_error(external_account_json({{"file", "/t"}}, {{"token_url", "ftp://x/token"}})),
                 std::string("is not an https URL"));
  CHECK_CONTAINS(
      external_error(external_account_json({{"file", "/t"}}, {{"service_account_impersonation_url",
                                                               "http://10.0.0.1/v1/x:generateAccessToken"}})),
      std::string(
          "service_account_impersonation_url 'http://10.0.0.1/v1/x:generateAccessToken' is plain http"));
  CHECK_CONTAINS(external_error(external_account_json({{"url", "http://10.1.2.3/token"}})),
                 std::string("credential_source.url 'http://10.1.2.3/token' is plain http"));
  CHECK(parse_external_account(
            external_account_json({{"file", "/t"}}, {{"token_url", "http://127.0.0.1:8080/token"}}),
            "/wif.json")
            .token_url == "http://127.0.0.1:8080/token");
  CHECK_CONTAINS(
      external_error(external_account_json(
          {{"file", "/t"}}, {{"service_account_impersonation", {{"token_lifetime_seconds", 60}}}})),
      std::string("token_lifetime_seconds must be 600 to 43200"));
}

TEST_CASE("the subject token is the text, trimmed, or a JSON field") {
  CHECK(subject_token_from("eyJ.a.b\n", "", "file '/t'") == "eyJ.a.b");
  CHECK(subject_token_from(R"({"access_token":"eyJ.c.d","expires_in":"3599"})", "access_token",
                           "'http://x'") == "eyJ.c.d");
  CHECK_THROWS_WITH_AS(subject_token_from("\n", "", "file '/t'"), "the subject token from file '/t' is empty",
                       StorageError);
  CHECK_THROWS_WITH_AS(subject_token_from(R"({"id_token":"x"})", "access_token", "'http://x'"),
                       "the subject token from 'http://x' has no string field 'access_token'", StorageError);
  CHECK_THROWS_WITH_AS(subject_token_from("eyJ.a.b", "access_token", "file '/t'"),
                       "the subject token from file '/t' is not a JSON object", StorageError);
}

TEST_CASE("the STS exchange sends RFC 8693's form and its answer gives the token and its expiry") {
  const ExternalAccount account = parse_external_account(
      external_account_json({{"file", "/t"}}, {{"audience", "//iam/p k"}}), "/wif.json");
  CHECK(sts_request_body(account, k_storage_scope, "eyJ.a+b") ==
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
        "&audience=%2F%2Fiam%2Fp%20k"
        "&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fdevstorage.read_write"
        "&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
        "&subject_token=eyJ.a%2Bb"
        "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt");

  const AccessToken sts = parse_token_answer(
      R"({"access_token":"ya29.sts","issued_token_type":"urn:ietf:params:oauth:token-type:access_token",)"
      R"("token_type":"Bearer","expires_in":3599})",
      1'000'000, "STS");
  CHECK(sts.value == "ya29.sts");
  CHECK(sts.expires_ms == 1'000'000 + 3'599'000);
  CHECK(parse_token_answer(R"({"access_token":"t","expires_in":"20"})", 0, "STS").expires_ms == 20'000);
  CHECK(parse_token_answer(R"({"access_token":"t"})", 0, "STS").expires_ms == 3'600'000);
  CHECK_THROWS_WITH_AS(parse_token_answer(R"({"token_type":"Bearer"})", 0, "STS"),
                       "unable to get an access token for STS: the answer has no access_token", StorageError);
  CHECK_THROWS_AS(parse_token_answer(R"({"access_token":"t","expires_in":"soon"})", 0, "STS"), StorageError);

  CHECK(token_error(400, R"({"error":"invalid_grant","error_description":"The audience is invalid."})") ==
        "HTTP 400: invalid_grant: The audience is invalid.");
  CHECK(token_error(
            403, R"({"error":{"code":403,"message":"Permission denied.","status":"PERMISSION_DENIED"}})") ==
        "HTTP 403: PERMISSION_DENIED: Permission denied.");
  CHECK(token_error(502, "<html>") == "HTTP 502");
}

TEST_CASE(
    "impersonation asks generateAccessToken for the storage scope and reads accessToken and expireTime") {
  ExternalAccount account;
  CHECK(impersonation_request_body(account, k_storage_scope) ==
        R"({"scope":["https://www.googleapis.com/auth/devstorage.read_write"]})");
  account.impersonation_lifetime_seconds = 1800;
  CHECK(nlohmann::json::parse(impersonation_request_body(account, k_storage_scope))["lifetime"] == "1800s");
  const AccessToken token =
      parse_impersonation_answer(R"({"accessToken":"ya29.sa","expireTime":"2030-01-01T00:00:00Z"})", "IAM");
  CHECK(token.value == "ya29.sa");
  CHECK(token.expires_ms == 1'893'456'000'000);
  CHECK_THROWS_WITH_AS(parse_impersonation_answer(R"({"accessToken":"x","expireTime":"later"})", "IAM"),
                       doctest::Contains("expireTime 'later' is unreadable"), StorageError);
}

TEST_CASE("an external_account file is read at start and named as the source, never its tokens") {
  char dir[] = "/tmp/walship-wif-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string path = std::string(dir) + "/wif.json";
  {
    std::ofstream out(path);
    out << external_account_json({{"file", std::string(dir) + "/token"}},
                                 {{"service_account_impersonation_url",
                                   "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
                                   "sa@p.iam.gserviceaccount.com:generateAccessToken"}});
  }
  ScopedEnv emulator("STORAGE_EMULATOR_HOST", nullptr);
  http::HttpClient http;
  Credentials credentials(http, path);
  CHECK(
      credentials.source() ==
      "external_account " + path +
          " (audience //iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k, "
          "subject token from file " +
          std::string(dir) + "/token, impersonating sa@p.iam.gserviceaccount.com)");
  CHECK(credentials.expires_ms() == 0);
  {
    std::ofstream out(path);
    out << external_account_json({{"executable", {{"command", "x"}}}});
  }
  CHECK_THROWS_WITH_AS(open_storage("gs://b/p?credentials-file=" + path),
                       doctest::Contains("executable-sourced"), UsageError);
  std::filesystem::remove_all(dir);
}

#ifdef WALSHIP_TEST_GCS
#include "tests/unit/gcs_fixture.h"

TEST_CASE("an access token is fetched once and refreshed five minutes before it expires") {
  using namespace std::chrono;
  // The test server checks iat and exp against the real time, so the fake
  // clock starts an hour minus two minutes back: the first token (an hour's
  // life) then expires two minutes from now.
  test::GcsTestServer& server = test::gcs_jwt_server();
  ScopedEnv emulator("STORAGE_EMULATOR_HOST", nullptr);
  const system_clock::time_point now = system_clock::now();
  system_clock::time_point fake = now - minutes(58);
  http::HttpClient http;
  Credentials credentials(http, server.credentials_file(), [&] { return fake; });
  const std::string first = credentials.authorization_header();
  CHECK(first.starts_with("Authorization: Bearer ya29.test-"));
  fake = now - minutes(28);
  CHECK(credentials.authorization_header() == first);  // cached
  fake = now - minutes(2);                             // 4 minutes before expiry: refreshed
  const std::string second = credentials.authorization_header();
  CHECK(second != first);
  fake = now;
  CHECK(credentials.authorization_header() == second);
  credentials.invalidate();  // as after a 401
  CHECK(credentials.authorization_header() != second);
}
#endif
