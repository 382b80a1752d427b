// Temporary AWS credentials from a role (s3_options.h, RoleSource): the web
// identity of an EKS service account (STS AssumeRoleWithWebIdentity), a
// profile's credential_process, the ECS task role or EKS Pod Identity
// (container credentials), or the EC2 instance profile (IMDSv2 only). They
// are fetched on first use and refreshed before they expire: five minutes
// ahead, or half their lifetime for short-lived ones. A refresh that fails
// while the current keys still hold keeps them and is retried (warning()
// says so, for /healthz); no request is signed with expired keys.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "backends/cloud/imds_session.h"
#include "backends/http/http_client.h"
#include "backends/s3/s3_options.h"
#include "backends/s3/s3_signer.h"

namespace walship::s3 {

struct TimedCredentials {
  Credentials keys;
  uint64_t expires_ms = 0;  // 0: they do not expire
};

// The JSON the instance metadata service, the container agents and a
// credential_process answer with (AccessKeyId, SecretAccessKey, Token or
// SessionToken, Expiration; IMDS's Code must be "Success"). Throws Failure
// naming `where` for anything else. Pure.
TimedCredentials parse_credentials_json(const std::string& json, const std::string& where);

class RoleCredentials {
 public:
  using Clock = std::function<uint64_t()>;  // ms since the epoch

  // `shown` names the replica in errors; `tls` is for STS over https.
  RoleCredentials(RoleSource source, std::string shown, http::TlsOptions tls, Clock clock = {});

  // The keys to sign the next request with. Throws StorageError (transient
  // for network trouble and 5xx) when there are no valid keys, and
  // UsageError when the source does not exist (no instance metadata service
  // or no role there: not on EC2) before any keys were ever obtained.
  Credentials get();
  // Forgets the keys (the store said they expired), so get() fetches anew.
  void invalidate();
  // Empty, or why the last refresh failed while the current keys still hold.
  std::string warning() const;
  // Where the keys come from (describe_role), with the instance profile's
  // role name once it is known; never a key.
  std::string source() const;
  // When the current keys expire (ms since the epoch); 0: none fetched yet, or never.
  uint64_t expires_ms() const;

 private:
  TimedCredentials fetch();
  TimedCredentials fetch_instance();
  TimedCredentials fetch_container();
  TimedCredentials fetch_web_identity();
  TimedCredentials fetch_process();
  // The body of `request`'s 200 answer; no answer or another status throws
  // the StorageError naming `where` (transient when trying again may help).
  std::string perform_or_throw(const http::HttpRequest& request, const std::string& where);

  RoleSource m_source;
  std::string m_shown;
  http::HttpClient m_http;
  cloud::ImdsSession m_imds;  // Kind::instance's; its token kept across refreshes
  Clock m_clock;

  mutable std::mutex m_mutex;
  std::optional<TimedCredentials> m_current;
  uint64_t m_fetched_ms = 0;
  uint64_t m_retry_ms = 0;  // no refresh before this, after a failed one
  std::string m_warning;
  bool m_ever = false;          // keys were obtained once
  std::string m_instance_role;  // the IAM role IMDS named
};

}  // namespace walship::s3
