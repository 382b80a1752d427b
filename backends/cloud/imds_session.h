// An EC2 instance metadata service session, IMDSv2 only: every GET carries a
// session token obtained with a PUT, as AWS requires of IMDSv2 (a GET
// without one is refused with 401 where IMDSv1 is off, and a v1-only
// service is never trusted). One implementation for the two users: the S3
// backend's instance-profile credentials (backends/s3/aws_credentials) and
// the spot notice watcher (metadata_watcher). Not thread-safe: each user
// holds its own, under its own lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "backends/http/http_client.h"

namespace walship::cloud {

// The link-local address of the EC2 instance metadata service, used unless
// $AWS_EC2_METADATA_SERVICE_ENDPOINT names another.
inline constexpr const char* k_imds_default_endpoint = "http://169.254.169.254";

// $AWS_EC2_METADATA_SERVICE_ENDPOINT, or the default, without a trailing '/'.
std::string imds_endpoint();

class ImdsSession {
 public:
  // `http` outlives the session. Requests give up connecting after
  // `connect_seconds` (off EC2 nothing answers) and after `timeout_seconds`
  // in all.
  ImdsSession(http::HttpClient& http, std::string endpoint, long connect_seconds, long timeout_seconds);

  const std::string& endpoint() const { return m_endpoint; }

  // GET `path` ("/latest/meta-data/...") with the session's token. The token
  // (asked for k_token_ttl_seconds) is kept until a minute before it expires;
  // a 401 (a token revoked or expired early) gets a new one and the GET is
  // tried once more. The answer is the GET's, or, when no token could be
  // had, the token PUT's (then token_failed() is true): status 0 with
  // `error` set when nothing answered.
  http::HttpResponse get(const std::string& path, http::TransportError& error,
                         const std::atomic<bool>* cancel = nullptr);

  // The last get() failed at the token PUT.
  bool token_failed() const { return m_token_failed; }

  // Six hours, the most IMDSv2 grants.
  static constexpr int k_token_ttl_seconds = 21600;

 private:
  bool fetch_token(http::HttpResponse& response, http::TransportError& error,
                   const std::atomic<bool>* cancel);

  http::HttpClient& m_http;
  std::string m_endpoint;
  long m_connect_seconds;
  long m_timeout_seconds;
  std::string m_token;
  int64_t m_token_until_ms = 0;  // steady clock: renew from then on
  bool m_token_failed = false;
};

}  // namespace walship::cloud
