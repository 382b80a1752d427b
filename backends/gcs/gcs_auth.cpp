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

#include "backends/url.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/percent_encode.h"
#include "lib/util/time.h"

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

std::string string_field(const nlohmann::json& doc, const char* name) {
  return doc.contains(name) && doc[name].is_string() ? doc[name].get<std::string>() : "";
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.starts_with("127.") || host == "::1";
}

// Where a token is sent or a subject token read: https, or plain http only
// to this machine (and, for a subject token URL, to the link-local metadata
// services that hand them out, such as Azure's at 169.254.169.254), since a
// token must not cross a network in clear text.
void check_endpoint(const std::string& url, const std::string& field, const std::string& path,
                    bool link_local_ok) {
  const std::string bad =
      "invalid Google Cloud credentials file '" + path + "': " + field + " '" + url + "' ";
  ParsedUrl parsed;
  try {
    parsed = parse_url(url);
  } catch (const UsageError&) {
    throw UsageError(bad + "is not a URL");
  }
  if (parsed.scheme == "https") return;
  if (parsed.scheme != "http") throw UsageError(bad + "is not an https URL");
  if (is_loopback(parsed.host) || (link_local_ok && parsed.host.starts_with("169.254."))) return;
  throw UsageError(bad + "is plain http to another machine; use https (http only to this machine)");
}

bool transient_status(long status) { return status >= 500 || status == 429 || status == 408; }

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
                     "'; use a service-account key (type service_account) or a workload identity "
                     "federation file (type external_account)");
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

std::string credentials_file_type(std::string_view json, const std::string& path) {
  const auto doc = nlohmann::json::parse(json, nullptr, false);
  if (!doc.is_object()) {
    throw UsageError("invalid Google Cloud credentials file '" + path + "': not a JSON object");
  }
  return string_field(doc, "type");
}

ExternalAccount parse_external_account(std::string_view json, const std::string& path) {
  const auto doc = nlohmann::json::parse(json, nullptr, false);
  const std::string invalid = "invalid Google Cloud credentials file '" + path + "': ";
  if (!doc.is_object()) throw UsageError(invalid + "not a JSON object");
  if (string_field(doc, "type") != "external_account") {
    throw UsageError(invalid + "type '" + string_field(doc, "type") + "', expected external_account");
  }
  auto required = [&](const char* name) {
    std::string value = string_field(doc, name);
    if (value.empty()) throw UsageError(invalid + "no \"" + std::string(name) + "\" field");
    return value;
  };
  ExternalAccount account;
  account.audience = required("audience");
  account.subject_token_type = required("subject_token_type");
  account.token_url = string_field(doc, "token_url");
  if (account.token_url.empty()) account.token_url = k_default_sts_url;
  check_endpoint(account.token_url, "token_url", path, false);
  account.impersonation_url = string_field(doc, "service_account_impersonation_url");
  if (!account.impersonation_url.empty()) {
    check_endpoint(account.impersonation_url, "service_account_impersonation_url", path, false);
    if (!account.impersonation_url.ends_with(":generateAccessToken")) {
      throw UsageError(invalid + "service_account_impersonation_url '" + account.impersonation_url +
                       "' does not end in :generateAccessToken");
    }
  }
  if (doc.contains("service_account_impersonation") && doc["service_account_impersonation"].is_object()) {
    const auto& options = doc["service_account_impersonation"];
    if (options.contains("token_lifetime_seconds")) {
      if (!options["token_lifetime_seconds"].is_number_integer() ||
          options["token_lifetime_seconds"].get<int64_t>() < 600 ||
          options["token_lifetime_seconds"].get<int64_t>() > 43200) {
        throw UsageError(invalid +
                         "service_account_impersonation.token_lifetime_seconds must be 600 to 43200");
      }
      account.impersonation_lifetime_seconds = options["token_lifetime_seconds"].get<int64_t>();
    }
  }

  if (!doc.contains("credential_source") || !doc["credential_source"].is_object()) {
    throw UsageError(invalid + "no \"credential_source\" object");
  }
  const auto& source = doc["credential_source"];
  if (source.contains("executable")) {
    throw UsageError("unsupported Google Cloud credentials file '" + path +
                     "': executable-sourced credentials (credential_source.executable) are not supported; "
                     "use a file or url credential_source");
  }
  if (source.contains("environment_id")) {
    throw UsageError("unsupported Google Cloud credentials file '" + path +
                     "': AWS-sourced credentials (credential_source.environment_id) are not supported; "
                     "use a file or url credential_source");
  }
  account.source_file = string_field(source, "file");
  account.source_url = string_field(source, "url");
  if (account.source_file.empty() == account.source_url.empty()) {
    throw UsageError(invalid + "credential_source needs exactly one of \"file\" and \"url\"");
  }
  if (!account.source_url.empty()) check_endpoint(account.source_url, "credential_source.url", path, true);
  if (source.contains("headers")) {
    if (!source["headers"].is_object())
      throw UsageError(invalid + "credential_source.headers is not an object");
    for (const auto& [name, value] : source["headers"].items()) {
      if (!value.is_string()) {
        throw UsageError(invalid + "credential_source.headers." + name + " is not a string");
      }
      account.source_headers.push_back(name + ": " + value.get<std::string>());
    }
  }
  if (source.contains("format")) {
    const auto& format = source["format"];
    const std::string type = format.is_object() ? string_field(format, "type") : "";
    if (type == "json") {
      account.subject_token_field = string_field(format, "subject_token_field_name");
      if (account.subject_token_field.empty()) {
        throw UsageError(invalid + "credential_source.format of type json needs subject_token_field_name");
      }
    } else if (type != "text" && !type.empty()) {
      throw UsageError(invalid + "credential_source.format type '" + type + "': use text or json");
    }
  }
  return account;
}

std::string subject_token_from(std::string_view content, const std::string& field, const std::string& where) {
  std::string token;
  if (field.empty()) {
    constexpr std::string_view k_space = " \t\r\n";
    const size_t first = content.find_first_not_of(k_space);
    if (first != std::string_view::npos) {
      token = std::string(content.substr(first, content.find_last_not_of(k_space) - first + 1));
    }
  } else {
    const auto doc = nlohmann::json::parse(content, nullptr, false);
    if (!doc.is_object())
      throw StorageError("the subject token from " + where + " is not a JSON object", false);
    if (!doc.contains(field) || !doc[field].is_string()) {
      throw StorageError("the subject token from " + where + " has no string field '" + field + "'", false);
    }
    token = doc[field].get<std::string>();
  }
  if (token.empty()) throw StorageError("the subject token from " + where + " is empty", false);
  return token;
}

std::string sts_request_body(const ExternalAccount& account, std::string_view scope,
                             std::string_view subject_token) {
  return "grant_type=" + percent_encode("urn:ietf:params:oauth:grant-type:token-exchange") +
         "&audience=" + percent_encode(account.audience) + "&scope=" + percent_encode(scope) +
         "&requested_token_type=" + percent_encode("urn:ietf:params:oauth:token-type:access_token") +
         "&subject_token=" + percent_encode(subject_token) +
         "&subject_token_type=" + percent_encode(account.subject_token_type);
}

std::string impersonation_request_body(const ExternalAccount& account, std::string_view scope) {
  nlohmann::json body = {{"scope", nlohmann::json::array({std::string(scope)})}};
  if (account.impersonation_lifetime_seconds > 0) {
    body["lifetime"] = std::to_string(account.impersonation_lifetime_seconds) + "s";
  }
  return body.dump();
}

AccessToken parse_token_answer(std::string_view body, uint64_t requested_ms, const std::string& where) {
  const auto doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_object() || string_field(doc, "access_token").empty()) {
    throw StorageError("unable to get an access token for " + where + ": the answer has no access_token",
                       true);
  }
  int64_t expires_in = 3600;
  if (doc.contains("expires_in")) {
    // Some servers send the number as a string.
    const auto& value = doc["expires_in"];
    if (value.is_number_integer()) {
      expires_in = value.get<int64_t>();
    } else if (value.is_string() && !value.get<std::string>().empty() &&
               value.get<std::string>().find_first_not_of("0123456789") == std::string::npos &&
               value.get<std::string>().size() < 10) {
      expires_in = std::stoll(value.get<std::string>());
    } else {
      throw StorageError(
          "unable to get an access token for " + where + ": the answer's expires_in is not a number", true);
    }
  }
  return {string_field(doc, "access_token"),
          requested_ms + static_cast<uint64_t>(std::max<int64_t>(expires_in, 0)) * 1000};
}

AccessToken parse_impersonation_answer(std::string_view body, const std::string& where) {
  const auto doc = nlohmann::json::parse(body, nullptr, false);
  const std::string token = doc.is_object() ? string_field(doc, "accessToken") : "";
  if (token.empty()) {
    throw StorageError("unable to get an access token for " + where + ": the answer has no accessToken",
                       true);
  }
  const std::string expire_time = string_field(doc, "expireTime");
  const std::optional<uint64_t> expires = parse_rfc3339(expire_time);
  if (!expires) {
    throw StorageError("unable to get an access token for " + where + ": the answer's expireTime '" +
                           expire_time + "' is unreadable",
                       true);
  }
  return {token, *expires};
}

std::string token_error(long status, std::string_view body) {
  std::string message = "HTTP " + std::to_string(status);
  const auto doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_object() || !doc.contains("error")) return message;
  const auto& error = doc["error"];
  if (error.is_string()) {
    message += ": " + error.get<std::string>();
    if (const std::string description = string_field(doc, "error_description"); !description.empty()) {
      message += ": " + description;
    }
  } else if (error.is_object()) {
    if (const std::string code = string_field(error, "status"); !code.empty()) message += ": " + code;
    if (const std::string text = string_field(error, "message"); !text.empty()) message += ": " + text;
  }
  return message;
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
    const std::string json =
        read_credentials_file(path, "Google Cloud credentials file", CredentialsFileError::usage);
    if (credentials_file_type(json, path) == "external_account") {
      m_external = parse_external_account(json, path);
    } else {
      m_account = parse_service_account(json, path);
    }
    return;
  }
  const char* host = std::getenv("GCE_METADATA_HOST");
  m_metadata_host = host != nullptr && *host != '\0' ? host : "metadata.google.internal";
}

uint64_t Credentials::now_ms() const {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(m_clock().time_since_epoch()).count());
}

std::string Credentials::authorization_header() {
  if (m_emulator) return {};
  std::lock_guard lock(m_mutex);
  const uint64_t now = now_ms();
  if (m_token.empty() || http::renewal_due(m_fetched_ms, m_expires_ms, now)) {
    AccessToken token = fetch_token();
    m_token = std::move(token.value);
    m_fetched_ms = now;
    m_expires_ms = std::max<uint64_t>(token.expires_ms, 1);  // 0 would mean "never expires"
    if (log_enabled(LogLevel::debug)) {
      log(LogLevel::debug, "GCS access token fetched",
          {{"from", source()}, {"expires", format_rfc3339(m_expires_ms)}});
    }
  }
  return "Authorization: Bearer " + m_token;
}

void Credentials::invalidate() {
  std::lock_guard lock(m_mutex);
  m_token.clear();
}

std::string Credentials::source() const {
  if (m_emulator) return "none (the emulator at " + *m_emulator + ", STORAGE_EMULATOR_HOST)";
  if (m_account)
    return "key file " + m_credentials_path + " (service account " + m_account->client_email + ")";
  if (m_external) {
    std::string out = "external_account " + m_credentials_path + " (audience " + m_external->audience +
                      ", subject token from " +
                      (m_external->source_file.empty() ? "url " + m_external->source_url
                                                       : "file " + m_external->source_file);
    if (!m_external->impersonation_url.empty()) {
      const std::string& url = m_external->impersonation_url;
      const size_t slash = url.rfind('/');
      out += ", impersonating " + url.substr(slash + 1, url.rfind(':') - slash - 1);
    }
    return out + ")";
  }
  return "the metadata server at " + m_metadata_host;
}

uint64_t Credentials::expires_ms() const {
  std::lock_guard lock(m_mutex);
  return m_token.empty() ? 0 : m_expires_ms;
}

AccessToken Credentials::fetch_token() {
  if (m_account) return fetch_service_account();
  if (m_external) return fetch_external();
  return fetch_metadata();
}

std::string Credentials::perform(const HttpRequest& request, const std::string& failure,
                                 const std::string& no_answer) {
  TransportError error;
  const HttpResponse response = m_http.perform(request, error);
  if (response.status == 0 && !no_answer.empty()) throw StorageError(no_answer + ": " + error.message, false);
  if (response.status == 0) throw StorageError(failure + ": " + error.message, error.transient);
  if (response.status != 200) {
    throw StorageError(failure + ": " + token_error(response.status, response.body),
                       transient_status(response.status));
  }
  return response.body;
}

namespace {

// A POST of `body` (form-encoded or JSON) to `url`.
struct Post {
  std::string body;
  MemorySource source;
  HttpRequest request;
  Post(std::string url, std::string text, std::vector<std::string> headers)
      : body(std::move(text)), source(as_bytes(body)) {
    request.method = "POST";
    request.url = std::move(url);
    request.headers = std::move(headers);
    request.body = &source;
    request.body_size = body.size();
    request.timeout_seconds = 60;
  }
  Post(const Post&) = delete;
  Post& operator=(const Post&) = delete;
};

}  // namespace

AccessToken Credentials::fetch_service_account() {
  const uint64_t now = now_ms();
  Post post(
      m_account->token_uri,
      "grant_type=" + percent_encode("urn:ietf:params:oauth:grant-type:jwt-bearer") + "&assertion=" +
          percent_encode(make_jwt_assertion(*m_account, k_storage_scope, static_cast<int64_t>(now / 1000))),
      {"Content-Type: application/x-www-form-urlencoded"});
  const std::string where =
      "service account '" + m_account->client_email + "' from '" + m_account->token_uri + "'";
  return parse_token_answer(perform(post.request, "unable to get an access token for " + where), now, where);
}

AccessToken Credentials::fetch_metadata() {
  HttpRequest request;
  request.url = "http://" + m_metadata_host + "/computeMetadata/v1/instance/service-accounts/default/token";
  request.headers = {"Metadata-Flavor: Google"};
  // Off GCE the metadata server does not exist: give up quickly.
  request.connect_timeout_seconds = 2;
  request.timeout_seconds = 5;
  const std::string where = "the GCE metadata server at '" + m_metadata_host + "'";
  const uint64_t requested = now_ms();
  const std::string body = perform(
      request, "unable to get an access token for " + where,
      "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS (or the credentials-file option) to a "
      "service-account key or workload identity federation file, or STORAGE_EMULATOR_HOST for an emulator; " +
          where + " did not answer");
  return parse_token_answer(body, requested, where);
}

// Read again at every exchange: Kubernetes and the other issuers rotate it.
std::string Credentials::subject_token() {
  const ExternalAccount& account = *m_external;
  if (!account.source_file.empty()) {
    const std::string where = "file '" + account.source_file + "'";
    return subject_token_from(
        read_credentials_file(account.source_file, "the subject token file", CredentialsFileError::storage),
        account.subject_token_field, where);
  }
  HttpRequest request;
  request.url = account.source_url;
  request.headers = account.source_headers;
  request.connect_timeout_seconds = 5;
  request.timeout_seconds = 30;
  const std::string where = "'" + account.source_url + "'";
  return subject_token_from(perform(request, "unable to read the subject token from " + where),
                            account.subject_token_field, where);
}

AccessToken Credentials::fetch_external() {
  const ExternalAccount& account = *m_external;
  const bool impersonate = !account.impersonation_url.empty();
  // The STS token of an impersonating file only calls IAM credentials, which
  // takes cloud-platform; otherwise it is the storage token itself.
  Post sts(account.token_url,
           sts_request_body(account, impersonate ? k_cloud_platform_scope : k_storage_scope, subject_token()),
           {"Content-Type: application/x-www-form-urlencoded"});
  const std::string where =
      "workload identity pool '" + account.audience + "' from '" + account.token_url + "'";
  const uint64_t requested = now_ms();
  const AccessToken federated = parse_token_answer(
      perform(sts.request, "unable to get an access token for " + where), requested, where);
  if (!impersonate) return federated;

  Post iam(account.impersonation_url, impersonation_request_body(account, k_storage_scope),
           {"Content-Type: application/json", "Authorization: Bearer " + federated.value});
  const std::string impersonation = "'" + account.impersonation_url + "'";
  return parse_impersonation_answer(
      perform(iam.request, "unable to get an access token for " + impersonation), impersonation);
}

}  // namespace walship::gcs
