#include "backends/s3/aws_credentials.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "backends/s3/s3_xml.h"
#include "lib/util/byte_stream.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/percent_encode.h"
#include "lib/util/time.h"

namespace walship::s3 {

using http::HttpRequest;
using http::HttpResponse;
using http::TransportError;

namespace {

constexpr uint64_t k_retry_ms = 10 * 1000;
// The instance metadata service is on the machine's link: off EC2 nothing
// answers, and a start must not stall long on finding that out.
constexpr long k_metadata_connect_seconds = 1;
constexpr long k_metadata_timeout_seconds = 5;

std::string string_field(const nlohmann::json& doc, const char* name) {
  return doc.contains(name) && doc[name].is_string() ? doc[name].get<std::string>() : "";
}

uint64_t parse_expiration(const std::string& text, const std::string& where) {
  if (text.empty()) return 0;
  const std::optional<uint64_t> ms = parse_rfc3339(text);
  if (!ms) throw Failure("the credentials from " + where + " have an unreadable Expiration '" + text + "'");
  return *ms;
}

// "HTTP 401" and what the body says, for an error message.
std::string http_error(const HttpResponse& response) {
  std::string message = "HTTP " + std::to_string(response.status);
  if (const auto sts = parse_sts_error(response.body))
    return message + ": " + sts->code + ": " + sts->message;
  const auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (doc.is_object()) {
    const std::string code = string_field(doc, "code"), text = string_field(doc, "message");
    if (!code.empty() || !text.empty()) return message + ": " + code + (code.empty() ? "" : ": ") + text;
  }
  return message;
}

bool transient_status(long status) { return status >= 500 || status == 429 || status == 408; }

// The body of a 200 answer from `where`; no answer or another status is a
// StorageError, transient when trying again may help.
std::string checked_body(const HttpResponse& response, const TransportError& error,
                         const std::string& where) {
  if (response.status == 0) {
    throw StorageError("unable to get S3 credentials from " + where + ": " + error.message, error.transient);
  }
  if (response.status != 200) {
    throw StorageError("unable to get S3 credentials from " + where + ": " + http_error(response),
                       transient_status(response.status));
  }
  return response.body;
}

}  // namespace

TimedCredentials parse_credentials_json(const std::string& json, const std::string& where) {
  const auto doc = nlohmann::json::parse(json, nullptr, false);
  if (!doc.is_object()) throw Failure("the credentials from " + where + " are not a JSON object");
  if (const std::string code = string_field(doc, "Code"); !code.empty() && code != "Success") {
    throw Failure("the credentials from " + where + " are not ready (Code " + code + ")");
  }
  TimedCredentials out;
  out.keys.access_key_id = string_field(doc, "AccessKeyId");
  out.keys.secret_access_key = string_field(doc, "SecretAccessKey");
  out.keys.session_token = string_field(doc, "Token");
  if (out.keys.session_token.empty()) out.keys.session_token = string_field(doc, "SessionToken");
  if (out.keys.access_key_id.empty() || out.keys.secret_access_key.empty()) {
    throw Failure("the credentials from " + where + " lack AccessKeyId or SecretAccessKey");
  }
  out.expires_ms = parse_expiration(string_field(doc, "Expiration"), where);
  return out;
}

RoleCredentials::RoleCredentials(RoleSource source, std::string shown, http::TlsOptions tls, Clock clock)
    : m_source(std::move(source)),
      m_shown(std::move(shown)),
      m_http(std::move(tls)),
      m_imds(m_http, m_source.url, k_metadata_connect_seconds, k_metadata_timeout_seconds),
      m_clock(clock ? std::move(clock) : Clock([] { return now_ms(); })) {}

Credentials RoleCredentials::get() {
  std::lock_guard lock(m_mutex);
  const uint64_t now = m_clock();
  const bool valid = m_current && (m_current->expires_ms == 0 || now < m_current->expires_ms);
  if (valid && !http::renewal_due(m_fetched_ms, m_current->expires_ms, now)) return m_current->keys;
  if (valid && now < m_retry_ms) return m_current->keys;
  try {
    m_current = fetch();
    m_fetched_ms = now;
    m_ever = true;
    if (log_enabled(LogLevel::info)) {
      log(LogLevel::info, m_warning.empty() ? "S3 credentials fetched" : "S3 credentials refreshed",
          {{"replica", m_shown},
           {"from", describe_role(m_source)},
           {"expires", m_current->expires_ms ? format_rfc3339(m_current->expires_ms) : "never"}});
    }
    m_warning.clear();
  } catch (const Error& e) {
    // Keys that still hold sign on until they expire; the refresh is tried
    // again in a while (sooner for short-lived keys).
    if (!valid) throw;
    const uint64_t lifetime = m_current->expires_ms > m_fetched_ms ? m_current->expires_ms - m_fetched_ms : 0;
    m_retry_ms = now + std::min(k_retry_ms, std::max<uint64_t>(lifetime / 8, 100));
    m_warning = "unable to refresh the S3 credentials of replica '" + m_shown + "' (from " +
                describe_role(m_source) + "); the current ones expire at " +
                format_rfc3339(m_current->expires_ms) + ": " + e.what();
    log(LogLevel::warn, "unable to refresh the S3 credentials; using the current ones until they expire",
        {{"replica", m_shown}, {"expires", format_rfc3339(m_current->expires_ms)}, {"error", e.what()}});
  }
  return m_current->keys;
}

void RoleCredentials::invalidate() {
  std::lock_guard lock(m_mutex);
  m_current.reset();
}

std::string RoleCredentials::warning() const {
  std::lock_guard lock(m_mutex);
  return m_warning;
}

std::string RoleCredentials::perform_or_throw(const HttpRequest& request, const std::string& where) {
  TransportError error;
  const HttpResponse response = m_http.perform(request, error);
  return checked_body(response, error, where);
}

std::string RoleCredentials::source() const {
  std::lock_guard lock(m_mutex);
  if (m_source.kind == RoleSource::Kind::instance && !m_instance_role.empty()) {
    return "IMDSv2 role '" + m_instance_role + "' of the EC2 instance profile (instance metadata at " +
           m_source.url + ")";
  }
  return describe_role(m_source);
}

uint64_t RoleCredentials::expires_ms() const {
  std::lock_guard lock(m_mutex);
  return m_current ? m_current->expires_ms : 0;
}

TimedCredentials RoleCredentials::fetch() {
  switch (m_source.kind) {
    case RoleSource::Kind::instance: return fetch_instance();
    case RoleSource::Kind::container: return fetch_container();
    case RoleSource::Kind::web_identity: return fetch_web_identity();
    case RoleSource::Kind::process: return fetch_process();
    case RoleSource::Kind::none: break;
  }
  throw Failure("no role to fetch S3 credentials from");
}

// IMDSv2 (cloud::ImdsSession: a session token, kept): the role's name, then
// its credentials.
TimedCredentials RoleCredentials::fetch_instance() {
  const std::string where = "the EC2 instance metadata service at " + m_source.url;
  auto call = [&](const std::string& path) {
    TransportError error;
    HttpResponse response = m_imds.get(path, error);
    // A first fetch that finds no instance metadata: there are no keys at all.
    if (response.status == 0 && !m_ever) {
      throw UsageError("unable to open replica '" + m_shown +
                       "': no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in "
                       "~/.aws/credentials, a role (AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE), or the "
                       "access-key-id and secret-access-key options; " +
                       where + " did not answer (not on EC2?): " + error.message);
    }
    if (response.status == 0) error.transient = true;  // the metadata service comes back
    if (response.status != 200 && response.status != 0 && !m_ever && m_imds.token_failed()) {
      throw UsageError(
          "unable to open replica '" + m_shown + "': no S3 credentials; " + where +
          " refused an IMDSv2 session (" + http_error(response) +
          "): not on EC2, or IMDSv2 is unreachable from here (a container needs a hop limit of 2)");
    }
    if (response.status == 404 && !m_ever) {
      throw UsageError("unable to open replica '" + m_shown + "': no S3 credentials; " + where +
                       " has no IAM role for this instance (attach an instance profile, or give keys)");
    }
    return checked_body(response, error, where);
  };
  std::string role = call("/latest/meta-data/iam/security-credentials/");
  role = role.substr(0, role.find('\n'));
  if (role.empty()) {
    throw StorageError("unable to get S3 credentials from " + where + ": it names no IAM role", false);
  }
  m_instance_role = role;  // fetch() runs under m_mutex
  const std::string json = call("/latest/meta-data/iam/security-credentials/" + percent_encode(role));
  try {
    return parse_credentials_json(json, where);
  } catch (const Failure& e) {
    throw StorageError(e.what(), true);
  }
}

// The ECS agent or the EKS Pod Identity agent: one GET, maybe with a token.
TimedCredentials RoleCredentials::fetch_container() {
  const std::string where = "the container credentials at " + m_source.url;
  HttpRequest request;
  request.url = m_source.url;
  if (!m_source.token_file.empty()) {
    request.headers.push_back("Authorization: " +
                              read_credentials_file(m_source.token_file,
                                                    "the container authorization token file",
                                                    CredentialsFileError::storage));
  } else if (!m_source.authorization.empty()) {
    request.headers.push_back("Authorization: " + m_source.authorization);
  }
  request.connect_timeout_seconds = k_metadata_connect_seconds;
  request.timeout_seconds = k_metadata_timeout_seconds;
  const std::string body = perform_or_throw(request, where);
  try {
    return parse_credentials_json(body, where);
  } catch (const Failure& e) {
    throw StorageError(e.what(), true);
  }
}

// STS AssumeRoleWithWebIdentity: unsigned; the token file is read each time
// (Kubernetes rotates it).
TimedCredentials RoleCredentials::fetch_web_identity() {
  const std::string where = "STS at " + m_source.url + " for role '" + m_source.role_arn + "'";
  const std::string token = read_credentials_file(m_source.token_file, "the web identity token file",
                                                  CredentialsFileError::storage);
  const std::string session =
      m_source.session_name.empty() ? "walship-" + std::to_string(::getpid()) : m_source.session_name;
  const std::string form =
      "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=" + percent_encode(m_source.role_arn) +
      "&RoleSessionName=" + percent_encode(session) + "&WebIdentityToken=" + percent_encode(token);
  MemorySource body(as_bytes(form));
  HttpRequest request;
  request.method = "POST";
  request.url = m_source.url + "/";
  request.headers = {"Content-Type: application/x-www-form-urlencoded", "Accept: application/xml"};
  request.body = &body;
  request.body_size = form.size();
  request.timeout_seconds = 30;
  const std::string xml = perform_or_throw(request, where);
  try {
    const StsCredentials sts = parse_sts_credentials(xml);
    return {{sts.access_key_id, sts.secret_access_key, sts.session_token},
            parse_expiration(sts.expiration, where)};
  } catch (const Failure& e) {
    throw StorageError(std::string(e.what()) + " (" + where + ")", true);
  }
}

// `sh -c COMMAND`; its stdout is the JSON (Version 1) the AWS CLI defines.
TimedCredentials RoleCredentials::fetch_process() {
  const std::string where = "the credential_process of AWS profile '" + m_source.profile + "'";
  FILE* pipe = ::popen(m_source.command.c_str(), "re");
  if (pipe == nullptr) throw StorageError(errno_message("unable to run " + where, errno), false);
  std::string out;
  char buffer[4096];
  size_t n;
  // Read to the end (a process blocked on a full pipe never exits); keep 64 KiB.
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    if (out.size() < (size_t{1} << 16)) out.append(buffer, n);
  }
  const int status = ::pclose(pipe);
  if (status != 0) {
    throw StorageError(where + " ('" + m_source.command + "') failed (exit status " +
                           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : status) + ")",
                       false);
  }
  const auto doc = nlohmann::json::parse(out, nullptr, false);
  if (doc.is_object() && (!doc.contains("Version") || doc["Version"] != 1)) {
    throw StorageError(where + " printed JSON without \"Version\": 1", false);
  }
  try {
    return parse_credentials_json(out, where);
  } catch (const Failure& e) {
    throw StorageError(e.what(), false);
  }
}

}  // namespace walship::s3
