#include "backends/cloud/imds_session.h"

#include <chrono>
#include <cstdlib>

namespace walship::cloud {

namespace {

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string imds_endpoint() {
  const char* given = std::getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  std::string url = given != nullptr && *given != '\0' ? given : k_imds_default_endpoint;
  while (url.ends_with('/')) url.pop_back();
  return url;
}

ImdsSession::ImdsSession(http::HttpClient& http, std::string endpoint, long connect_seconds,
                         long timeout_seconds)
    : m_http(http),
      m_endpoint(std::move(endpoint)),
      m_connect_seconds(connect_seconds),
      m_timeout_seconds(timeout_seconds) {}

bool ImdsSession::fetch_token(http::HttpResponse& response, http::TransportError& error,
                              const std::atomic<bool>* cancel) {
  http::HttpRequest request;
  request.method = "PUT";
  request.url = m_endpoint + "/latest/api/token";
  request.headers = {"X-aws-ec2-metadata-token-ttl-seconds: " + std::to_string(k_token_ttl_seconds)};
  request.connect_timeout_seconds = m_connect_seconds;
  request.timeout_seconds = m_timeout_seconds;
  request.cancel = cancel;
  const int64_t asked = steady_ms();
  response = m_http.perform(request, error);
  if (response.status != 200 || response.body.empty()) return false;
  m_token = response.body;
  // Renewed a minute early: a token must not expire between here and the server.
  m_token_until_ms = asked + (k_token_ttl_seconds - 60) * 1000LL;
  return true;
}

http::HttpResponse ImdsSession::get(const std::string& path, http::TransportError& error,
                                    const std::atomic<bool>* cancel) {
  m_token_failed = false;
  http::HttpResponse response;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (m_token.empty() || steady_ms() >= m_token_until_ms) {
      m_token.clear();
      if (!fetch_token(response, error, cancel)) {
        m_token_failed = true;
        return response;
      }
    }
    http::HttpRequest request;
    request.url = m_endpoint + path;
    request.headers = {"X-aws-ec2-metadata-token: " + m_token};
    request.connect_timeout_seconds = m_connect_seconds;
    request.timeout_seconds = m_timeout_seconds;
    request.cancel = cancel;
    error = {};
    response = m_http.perform(request, error);
    if (response.status != 401) break;
    m_token.clear();  // revoked or expired early: one more try with a new one
  }
  return response;
}

}  // namespace walship::cloud
