#include "backends/gcs/gcs_auth.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/version.h>

#include <array>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/percent_encode.h"

namespace walship::gcs {

using http::HttpClient;
using http::HttpRequest;
using http::HttpResponse;
using http::TransportError;

namespace {

// RAII for the mbedTLS contexts signing needs.
struct PkContext {
  mbedtls_pk_context ctx;
  PkContext() { mbedtls_pk_init(&ctx); }
  ~PkContext() { mbedtls_pk_free(&ctx); }
  PkContext(const PkContext&) = delete;
  PkContext& operator=(const PkContext&) = delete;
};

struct Random {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  Random() {
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    static constexpr unsigned char k_personalization[] = "walship-gcs-jwt";
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, k_personalization,
                              sizeof k_personalization - 1) != 0) {
      mbedtls_ctr_drbg_free(&drbg);
      mbedtls_entropy_free(&entropy);
      throw Failure("unable to sign a Google Cloud token request: no entropy source");
    }
  }
  ~Random() {
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
  }
  Random(const Random&) = delete;
  Random& operator=(const Random&) = delete;
};

std::string mbedtls_message(int code) {
  char buffer[128];
  buffer[0] = '\0';
  mbedtls_strerror(code, buffer, sizeof buffer);
  return buffer;
}

// "HTTP 400: invalid_grant: Invalid JWT Signature." from an OAuth error body.
std::string oauth_error(const HttpResponse& response) {
  std::string message = "HTTP " + std::to_string(response.status);
  const auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object()) {
    if (body.contains("error") && body["error"].is_string())
      message += ": " + body["error"].get<std::string>();
    if (body.contains("error_description") && body["error_description"].is_string()) {
      message += ": " + body["error_description"].get<std::string>();
    }
  }
  return message;
}

}  // namespace

ServiceAccount parse_service_account(std::string_view json, const std::string& path) {
  const auto doc = nlohmann::json::parse(json, nullptr, false);
  if (!doc.is_object()) {
    throw UsageError("invalid Google Cloud credentials file '" + path + "': not a JSON object");
  }
  auto field = [&](const char* name, bool required) -> std::string {
    if (doc.contains(name) && doc[name].is_string()) return doc[name].get<std::string>();
    if (required) {
      throw UsageError("invalid Google Cloud credentials file '" + path + "': no \"" + std::string(name) +
                       "\" field");
    }
    return {};
  };
  const std::string type = field("type", true);
  if (type != "service_account") {
    throw UsageError("unsupported Google Cloud credentials file '" + path + "': type '" + type +
                     "'; use a service-account key (type service_account)");
  }
  ServiceAccount account;
  account.client_email = field("client_email", true);
  account.private_key = field("private_key", true);
  account.private_key_id = field("private_key_id", false);
  account.token_uri = field("token_uri", false);
  if (account.token_uri.empty()) account.token_uri = "https://oauth2.googleapis.com/token";
  return account;
}

std::string base64url(std::string_view data) {
  static constexpr char k_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(data[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(data[i + 1])} << 8) |
                       uint32_t{static_cast<unsigned char>(data[i + 2])};
    out += k_alphabet[(v >> 18) & 63];
    out += k_alphabet[(v >> 12) & 63];
    out += k_alphabet[(v >> 6) & 63];
    out += k_alphabet[v & 63];
  }
  if (data.size() - i == 1) {
    const uint32_t v = uint32_t{static_cast<unsigned char>(data[i])} << 16;
    out += k_alphabet[(v >> 18) & 63];
    out += k_alphabet[(v >> 12) & 63];
  } else if (data.size() - i == 2) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(data[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(data[i + 1])} << 8);
    out += k_alphabet[(v >> 18) & 63];
    out += k_alphabet[(v >> 12) & 63];
    out += k_alphabet[(v >> 6) & 63];
  }
  return out;
}

std::string make_jwt_assertion(const ServiceAccount& account, std::string_view scope, int64_t now_unix) {
  nlohmann::json header = {{"alg", "RS256"}, {"typ", "JWT"}};
  if (!account.private_key_id.empty()) header["kid"] = account.private_key_id;
  const nlohmann::json claims = {{"iss", account.client_email},
                                 {"scope", std::string(scope)},
                                 {"aud", account.token_uri},
                                 {"iat", now_unix},
                                 {"exp", now_unix + 3600}};
  const std::string signing_input = base64url(header.dump()) + "." + base64url(claims.dump());

  PkContext key;
  const auto* pem = reinterpret_cast<const unsigned char*>(account.private_key.c_str());
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  Random parse_random;
  int rc = mbedtls_pk_parse_key(&key.ctx, pem, account.private_key.size() + 1, nullptr, 0,
                                mbedtls_ctr_drbg_random, &parse_random.drbg);
#else
  int rc = mbedtls_pk_parse_key(&key.ctx, pem, account.private_key.size() + 1, nullptr, 0);
#endif
  if (rc != 0) {
    throw UsageError("invalid private key of Google Cloud service account '" + account.client_email +
                     "': " + mbedtls_message(rc));
  }
  if (!mbedtls_pk_can_do(&key.ctx, MBEDTLS_PK_RSA)) {
    throw UsageError("invalid private key of Google Cloud service account '" + account.client_email +
                     "': not an RSA key");
  }

  std::array<unsigned char, 32> hash{};
  rc = mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                  reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(),
                  hash.data());
  if (rc != 0) throw Failure("unable to hash a JWT: " + mbedtls_message(rc));

  Random random;  // RSA blinding
  std::vector<unsigned char> signature(MBEDTLS_PK_SIGNATURE_MAX_SIZE);
  size_t signature_len = 0;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  rc = mbedtls_pk_sign(&key.ctx, MBEDTLS_MD_SHA256, hash.data(), hash.size(), signature.data(),
                       signature.size(), &signature_len, mbedtls_ctr_drbg_random, &random.drbg);
#else
  rc = mbedtls_pk_sign(&key.ctx, MBEDTLS_MD_SHA256, hash.data(), hash.size(), signature.data(),
                       &signature_len, mbedtls_ctr_drbg_random, &random.drbg);
#endif
  if (rc != 0) {
    throw Failure("unable to sign a JWT for Google Cloud service account '" + account.client_email +
                  "': " + mbedtls_message(rc));
  }
  return signing_input + "." +
         base64url(std::string_view(reinterpret_cast<const char*>(signature.data()), signature_len));
}

Credentials::Credentials(HttpClient& http, const std::string& credentials_file, Clock clock)
    : m_http(http),
      m_clock(clock ? std::move(clock) : Clock([] { return std::chrono::system_clock::now(); })) {
  if (const char* emulator = std::getenv("STORAGE_EMULATOR_HOST"); emulator != nullptr && *emulator != '\0') {
    std::string base = emulator;
    if (base.find("://") == std::string::npos) base = "http://" + base;
    while (base.ends_with('/')) base.pop_back();
    m_emulator = base;
    return;
  }
  std::string path = credentials_file;
  if (path.empty()) {
    if (const char* env = std::getenv("GOOGLE_APPLICATION_CREDENTIALS"); env != nullptr) path = env;
  }
  if (!path.empty()) {
    m_credentials_path = path;
    m_account = parse_service_account(
        read_credentials_file(path, "Google Cloud credentials file", CredentialsFileError::usage), path);
    return;
  }
  const char* host = std::getenv("GCE_METADATA_HOST");
  m_metadata_host = host != nullptr && *host != '\0' ? host : "metadata.google.internal";
}

std::string Credentials::authorization_header() {
  if (m_emulator) return {};
  std::lock_guard lock(m_mutex);
  const auto now_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(m_clock().time_since_epoch()).count());
  if (m_token.empty() || http::renewal_due(m_fetched_ms, m_expires_ms, now_ms)) fetch_token();
  return "Authorization: Bearer " + m_token;
}

void Credentials::invalidate() {
  std::lock_guard lock(m_mutex);
  m_token.clear();
}

void Credentials::fetch_token() {
  HttpRequest request;
  std::string form;
  MemorySource body({});
  std::string where;
  if (m_account) {
    const auto now = m_clock();
    const int64_t now_unix = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    form = "grant_type=" + percent_encode("urn:ietf:params:oauth:grant-type:jwt-bearer") +
           "&assertion=" + percent_encode(make_jwt_assertion(*m_account, k_storage_scope, now_unix));
    body = MemorySource(as_bytes(form));
    request.method = "POST";
    request.url = m_account->token_uri;
    request.headers = {"Content-Type: application/x-www-form-urlencoded"};
    request.body = &body;
    request.body_size = form.size();
    request.timeout_seconds = 60;
    where = "service account '" + m_account->client_email + "' from '" + m_account->token_uri + "'";
  } else {
    request.url = "http://" + m_metadata_host + "/computeMetadata/v1/instance/service-accounts/default/token";
    request.headers = {"Metadata-Flavor: Google"};
    // Off GCE the metadata server does not exist: give up quickly.
    request.connect_timeout_seconds = 2;
    request.timeout_seconds = 5;
    where = "the GCE metadata server at '" + m_metadata_host + "'";
  }

  const auto requested = m_clock();
  TransportError error;
  const HttpResponse response = m_http.perform(request, error);
  if (response.status == 0) {
    if (!m_account) {
      throw StorageError(
          "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS (or the "
          "credentials-file option) to a service-account key file, or STORAGE_EMULATOR_HOST "
          "for an emulator; " +
              where + " did not answer: " + error.message,
          false);
    }
    throw StorageError("unable to get an access token for " + where + ": " + error.message, error.transient);
  }
  if (response.status != 200) {
    const bool transient = response.status >= 500 || response.status == 429 || response.status == 408;
    throw StorageError("unable to get an access token for " + where + ": " + oauth_error(response),
                       transient);
  }
  const auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (!doc.is_object() || !doc.contains("access_token") || !doc["access_token"].is_string()) {
    throw StorageError("unable to get an access token for " + where + ": the answer has no access_token",
                       true);
  }
  m_token = doc["access_token"].get<std::string>();
  int64_t expires_in = 3600;
  if (doc.contains("expires_in") && doc["expires_in"].is_number_integer()) {
    expires_in = doc["expires_in"].get<int64_t>();
  }
  const auto requested_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(requested.time_since_epoch()).count());
  m_fetched_ms = requested_ms;
  m_expires_ms =
      std::max<uint64_t>(requested_ms + static_cast<uint64_t>(std::max<int64_t>(expires_in, 0)) * 1000, 1);
}

}  // namespace walship::gcs
