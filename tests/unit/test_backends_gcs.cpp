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

#include <nlohmann/json.hpp>
#include <string>

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
