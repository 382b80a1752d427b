// Credentials for the GCS JSON API, in the order Google's own libraries try
// them: STORAGE_EMULATOR_HOST (an emulator: no auth at all), a credentials
// file (the `credentials-file` option or GOOGLE_APPLICATION_CREDENTIALS),
// then the GCE/GKE metadata server (GCE_METADATA_HOST overrides its address).
// A credentials file is a service-account key (a JWT signed RS256 with
// mbedTLS, exchanged at the key's token_uri) or a workload identity
// federation file (type external_account: a subject token from a file or a
// URL, exchanged at Google's STS, then optionally for a service account's
// token at IAM credentials' generateAccessToken). Tokens are cached and
// renewed by http::renewal_due (five minutes ahead, or half-way).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/http/http_client.h"

namespace walship::gcs {

constexpr std::string_view k_storage_scope = "https://www.googleapis.com/auth/devstorage.read_write";
constexpr std::string_view k_cloud_platform_scope = "https://www.googleapis.com/auth/cloud-platform";
constexpr std::string_view k_default_sts_url = "https://sts.googleapis.com/v1/token";

struct ServiceAccount {
  std::string client_email;
  std::string private_key;  // PEM, PKCS#8 as Google issues it
  std::string private_key_id;
  std::string token_uri;
};

// Parses a service-account key file's JSON. Throws UsageError naming `path`
// when it is not JSON, not of type "service_account", or lacks a field.
ServiceAccount parse_service_account(std::string_view json, const std::string& path);

// A workload identity federation file (type external_account), as Google's
// auth libraries read it: the subject token comes from `credential_source`
// (a file, or a URL with headers; format text, or json with
// subject_token_field_name), is exchanged at `token_url` (RFC 8693), and the
// STS token is used as it is or, with service_account_impersonation_url,
// exchanged for a service account's token.
struct ExternalAccount {
  std::string audience;
  std::string subject_token_type;
  std::string token_url;                       // default k_default_sts_url
  std::string impersonation_url;               // empty: the STS token is the access token
  int64_t impersonation_lifetime_seconds = 0;  // service_account_impersonation.token_lifetime_seconds; 0: 1 h
  std::string source_file;                     // credential_source.file, or
  std::string source_url;                      // credential_source.url
  std::vector<std::string> source_headers;     // "Name: value", for the url
  std::string subject_token_field;             // format json: the field; empty: format text
};

// Parses an external_account file's JSON. Throws UsageError naming `path`
// for a missing field, a credential_source with neither or both of file and
// url, an executable or AWS (environment_id) source (not supported), a bad
// format, or a token or impersonation URL that is not https (plain http only
// to this machine: a token must not cross a network in clear text). Pure.
ExternalAccount parse_external_account(std::string_view json, const std::string& path);

// The "type" of a Google credentials file's JSON, to choose the parser.
// Throws UsageError naming `path` when it is not a JSON object. Pure.
std::string credentials_file_type(std::string_view json, const std::string& path);

// The subject token in `content` (a file's or a URL's answer): all of it,
// white space around it removed, for format text; the string in `field` for
// format json. Throws StorageError (not transient) naming `where`. Pure.
std::string subject_token_from(std::string_view content, const std::string& field, const std::string& where);

// The form-encoded body of the STS token exchange (RFC 8693 section 2.1, as
// Google's STS takes it): grant_type token-exchange, audience, scope,
// requested_token_type access_token, subject_token, subject_token_type.
std::string sts_request_body(const ExternalAccount& account, std::string_view scope,
                             std::string_view subject_token);

// The JSON body of IAM credentials' generateAccessToken: scope, and lifetime
// when the file sets one.
std::string impersonation_request_body(const ExternalAccount& account, std::string_view scope);

// An access token and when it expires (ms since the epoch).
struct AccessToken {
  std::string value;
  uint64_t expires_ms = 0;
};

// An OAuth token endpoint's answer (the JWT grant, the metadata server, STS):
// access_token, expires_in (a number or a numeric string; 3600 when absent)
// counted from `requested_ms`. Throws StorageError (transient) naming `where`
// for an answer without a token. Pure.
AccessToken parse_token_answer(std::string_view body, uint64_t requested_ms, const std::string& where);

// generateAccessToken's answer: accessToken and expireTime (RFC 3339).
// Throws StorageError (transient) naming `where` for anything else. Pure.
AccessToken parse_impersonation_answer(std::string_view body, const std::string& where);

// "HTTP 400: invalid_grant: The subject token is invalid." from an OAuth
// error body ({"error": "...", "error_description": "..."}) or a Google API
// error body ({"error": {"code": ..., "message": "...", "status": "..."}}).
std::string token_error(long status, std::string_view body);

// Base64url without padding (RFC 7515 section 2).
std::string base64url(std::string_view data);

// The signed JWT for the OAuth 2.0 JWT bearer grant (RFC 7523) that Google's
// token endpoint takes: RS256, iss = client_email, aud = token_uri, iat = now,
// exp = now + 1 h. Throws UsageError if the private key does not parse.
std::string make_jwt_assertion(const ServiceAccount& account, std::string_view scope, int64_t now_unix);

class Credentials {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  // `credentials_file` is the option's value, empty when not given. Reads the
  // environment and the credentials file now (UsageError for a bad file); no
  // network.
  Credentials(http::HttpClient& http, const std::string& credentials_file, Clock clock = {});

  // The emulator's base URL ("http://host:port") when STORAGE_EMULATOR_HOST is set.
  const std::optional<std::string>& emulator() const { return m_emulator; }

  // The "Authorization: Bearer ..." header, fetching or refreshing the token
  // when needed; empty with an emulator. Throws StorageError: transient for
  // network trouble and 5xx, not for rejected credentials or no credentials.
  std::string authorization_header();

  // Forgets the cached token (after a 401), so the next call fetches one.
  void invalidate();

  // Where the tokens come from, for `walship doctor`: "key file PATH
  // (service account EMAIL)", "external_account PATH (audience ...)", "the
  // metadata server at HOST", "none (emulator at URL)". Never a secret.
  std::string source() const;
  // When the current token expires (ms since the epoch); 0: none yet.
  uint64_t expires_ms() const;

 private:
  uint64_t now_ms() const;
  AccessToken fetch_token();
  AccessToken fetch_service_account();
  AccessToken fetch_metadata();
  AccessToken fetch_external();
  std::string subject_token();
  // Sends `request`; the body of a 200 answer, else a StorageError
  // "<failure>: <cause>" (transient for network trouble, 5xx, 429 and 408).
  // `no_answer`, when given, begins the message when nothing answered at all
  // (then not transient: nothing is there).
  std::string perform(const http::HttpRequest& request, const std::string& failure,
                      const std::string& no_answer = "");

  http::HttpClient& m_http;
  Clock m_clock;
  std::optional<std::string> m_emulator;
  std::optional<ServiceAccount> m_account;
  std::optional<ExternalAccount> m_external;
  std::string m_credentials_path;
  std::string m_metadata_host;

  mutable std::mutex m_mutex;
  std::string m_token;
  uint64_t m_fetched_ms = 0;
  uint64_t m_expires_ms = 0;
};

}  // namespace walship::gcs
