// Credentials for the GCS JSON API, in the order Google's own libraries try
// them: STORAGE_EMULATOR_HOST (an emulator: no auth at all), a service-account
// JSON key (the `credentials-file` option or GOOGLE_APPLICATION_CREDENTIALS;
// a JWT signed RS256 with mbedTLS, exchanged at the key's token_uri), then the
// GCE/GKE metadata server (GCE_METADATA_HOST overrides its address). Tokens
// are renewed by http::renewal_due (five minutes ahead, or half-way).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "backends/http/http_client.h"

namespace walship::gcs {

constexpr std::string_view k_storage_scope = "https://www.googleapis.com/auth/devstorage.read_write";

struct ServiceAccount {
  std::string client_email;
  std::string private_key;  // PEM, PKCS#8 as Google issues it
  std::string private_key_id;
  std::string token_uri;
};

// Parses a service-account key file's JSON. Throws UsageError naming `path`
// when it is not JSON, not of type "service_account", or lacks a field.
ServiceAccount parse_service_account(std::string_view json, const std::string& path);

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
  // environment and the key file now (UsageError for a bad file); no network.
  Credentials(http::HttpClient& http, const std::string& credentials_file, Clock clock = {});

  // The emulator's base URL ("http://host:port") when STORAGE_EMULATOR_HOST is set.
  const std::optional<std::string>& emulator() const { return m_emulator; }

  // The "Authorization: Bearer ..." header, fetching or refreshing the token
  // when needed; empty with an emulator. Throws StorageError: transient for
  // network trouble and 5xx, not for rejected credentials or no credentials.
  std::string authorization_header();

  // Forgets the cached token (after a 401), so the next call fetches one.
  void invalidate();

 private:
  void fetch_token();

  http::HttpClient& m_http;
  Clock m_clock;
  std::optional<std::string> m_emulator;
  std::optional<ServiceAccount> m_account;
  std::string m_credentials_path;
  std::string m_metadata_host;

  std::mutex m_mutex;
  std::string m_token;
  uint64_t m_fetched_ms = 0;
  uint64_t m_expires_ms = 0;
};

}  // namespace walship::gcs
