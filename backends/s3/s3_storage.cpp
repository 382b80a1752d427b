#include "backends/s3/s3_storage.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <future>
#include <random>
#include <thread>

#include "backends/s3/s3_xml.h"
#include "lib/util/error.h"
#include "lib/util/log.h"
#include "lib/util/temp_name.h"

namespace walship {

namespace {

// Parts of one multipart upload in flight at once: memory is this many parts.
constexpr size_t k_parallel_parts = 4;
// Tries of one part before the whole upload fails (and RetryingStorage
// starts it over).
constexpr int k_part_attempts = 4;
// Keys per DeleteObjects request: S3's limit.
constexpr size_t k_delete_batch = 1000;
// Objects under the prefix whose name starts with this are walship's
// conditional-write probes, never replica files.
constexpr std::string_view k_probe_prefix = ".walship-probe-";

std::string amz_now() {
  const time_t now = ::time(nullptr);
  tm utc{};
  ::gmtime_r(&now, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &utc);
  return buffer;
}

std::string short_source(uint64_t got, uint64_t expected, const std::string& what) {
  return what + ": the source ended after " + std::to_string(got) + " bytes, expected " +
         std::to_string(expected);
}

// Reads exactly `out.size()` bytes, or throws.
void read_exactly(ByteSource& data, std::span<std::byte> out, uint64_t before, uint64_t total,
                  const std::string& what) {
  size_t filled = 0;
  while (filled < out.size()) {
    const size_t n = data.read(out.subspan(filled));
    if (n == 0) throw Failure(short_source(before + filled, total, what));
    filled += n;
  }
}

std::string error_code(const http::HttpResponse& response) {
  const auto info = s3::parse_error(response.body);
  return info ? info->code : "";
}

bool is_success(long status) { return status >= 200 && status < 300; }

// Stores that do not take If-None-Match on writes answer 501 NotImplemented
// (or 400 with that code); others ignore the header.
bool is_not_implemented(const http::HttpResponse& response) {
  return response.status == 501 || error_code(response) == "NotImplemented";
}

}  // namespace

namespace s3 {

bool is_transient(long status, const std::string& code) {
  static constexpr std::string_view k_transient_codes[] = {
      "SlowDown",   "RequestTimeout",      "InternalError",        "ServiceUnavailable", "OperationAborted",
      "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"};
  if (std::find(std::begin(k_transient_codes), std::end(k_transient_codes), code) !=
      std::end(k_transient_codes)) {
    return true;
  }
  if (status == 403 || status == 404 || status == 501) return false;
  return status == 408 || status == 429 || status >= 500;
}

uint64_t part_size_for(uint64_t size, uint64_t part_size) {
  if (part_size == 0) part_size = k_min_part_size;
  if ((size + part_size - 1) / part_size <= k_max_parts) return part_size;
  constexpr uint64_t mib = uint64_t{1} << 20;
  const uint64_t needed = (size + k_max_parts - 1) / k_max_parts;
  return (needed + mib - 1) / mib * mib;
}

}  // namespace s3

std::unique_ptr<Storage> open_s3_storage(const ParsedUrl& parsed, const std::string& url) {
  s3::Options options = s3::parse_s3_url(parsed, url);
  s3::Resolved resolved = s3::resolve(options, url);
  if (!resolved.ca_file.empty() && ::access(resolved.ca_file.c_str(), R_OK) != 0) {
    throw UsageError("unable to open replica '" + redact_url(url) +
                     "': " + errno_message("cannot read the CA file '" + resolved.ca_file + "'", errno));
  }
  return std::make_unique<S3Storage>(std::move(options), std::move(resolved));
}

S3Storage::S3Storage(s3::Options options, s3::Resolved resolved)
    : m_options(std::move(options)),
      m_names{"s3", m_options.bucket, m_options.prefix},
      m_resolved(std::move(resolved)),
      m_http(http::TlsOptions{m_resolved.ca_file, m_options.insecure_skip_verify}) {
  const ParsedUrl endpoint = parse_url(m_resolved.endpoint);
  m_scheme = endpoint.scheme;
  m_authority = endpoint.host.find(':') != std::string::npos ? "[" + endpoint.host + "]" : endpoint.host;
  if (endpoint.port) m_authority += ":" + std::to_string(*endpoint.port);
  if (m_resolved.role.kind != s3::RoleSource::Kind::none) {
    m_role = std::make_unique<s3::RoleCredentials>(m_resolved.role, redact_url(url()),
                                                   http::TlsOptions{m_resolved.role_ca_file, false});
  }
  if (m_options.insecure_skip_verify && log_enabled(LogLevel::warn)) {
    log(LogLevel::warn,
        "TLS certificate verification is off (insecure-skip-verify): anyone on the path can "
        "read and change what is sent",
        {{"replica", url()}});
  }
}

S3Storage::~S3Storage() = default;

std::string S3Storage::url() const { return m_names.url(); }

std::string S3Storage::warning() const { return m_role ? m_role->warning() : ""; }

StorageFacts S3Storage::facts() const {
  if (!m_role) return {"s3", m_resolved.credentials_source, 0};
  return {"s3", m_role->source(), m_role->expires_ms()};
}

http::HttpResponse S3Storage::send(const Request& request, const std::string& what) const {
  const std::string path = s3::uri_encode(request.object, false);
  std::string host;
  std::string canonical_uri;
  if (m_resolved.path_style) {
    host = m_authority;
    canonical_uri = "/" + s3::uri_encode(m_options.bucket, true) + (request.object.empty() ? "" : "/" + path);
  } else {
    host = m_options.bucket + "." + m_authority;
    canonical_uri = "/" + path;
  }
  std::string query;
  for (const auto& [name, value] : request.query) {
    query += (query.empty() ? "?" : "&") + s3::uri_encode(name, true) + "=" + s3::uri_encode(value, true);
  }

  const s3::Credentials keys = m_role ? m_role->get() : m_resolved.credentials;
  const std::string amz_date = amz_now();
  s3::SigningRequest signing;
  signing.method = request.method;
  signing.canonical_uri = canonical_uri;
  signing.query = request.query;
  signing.headers = {
      {"Host", host}, {"x-amz-date", amz_date}, {"x-amz-content-sha256", request.payload_hash}};
  if (!keys.session_token.empty()) signing.headers.emplace_back("x-amz-security-token", keys.session_token);
  signing.headers.insert(signing.headers.end(), request.headers.begin(), request.headers.end());
  signing.payload_hash = request.payload_hash;

  http::HttpRequest http_request;
  http_request.method = request.method;
  http_request.url = m_scheme + "://" + host + canonical_uri + query;
  for (const auto& [name, value] : signing.headers) http_request.headers.push_back(name + ": " + value);
  http_request.headers.push_back("Authorization: " +
                                 s3::authorization(signing, keys, m_resolved.region, "s3", amz_date));
  http_request.body = request.body;
  http_request.body_size = request.body != nullptr ? request.body->size() : 0;
  http_request.sink = request.sink;
  http_request.max_body = request.max_body;

  http::TransportError error;
  http::HttpResponse response = m_http.perform(http_request, error);
  if (response.status == 0) {
    std::string hint;
    if (error.message.find("certificate") != std::string::npos) {
      hint = "; set ca-file to the CA certificate that signed the store's (or $AWS_CA_BUNDLE)";
    }
    throw StorageError(what + ": " + error.message + " (" + m_resolved.endpoint + ")" + hint,
                       error.transient);
  }
  return response;
}

void S3Storage::fail(const http::HttpResponse& response, const std::string& what) const {
  const auto info = s3::parse_error(response.body);
  const std::string code = info ? info->code : "";
  std::string message = info ? info->message : response.body.substr(0, 200);
  std::replace(message.begin(), message.end(), '\n', ' ');
  while (!message.empty() && (message.back() == '.' || message.back() == ' ')) message.pop_back();
  if (message.empty()) message = "no details from the server";
  const std::string bucket = "bucket '" + m_options.bucket + "'";
  if (code == "NoSuchBucket") {
    throw StorageError(what + ": " + bucket + " does not exist (NoSuchBucket) at " + m_resolved.endpoint,
                       false);
  }

  std::string hint;
  std::string region = info ? info->region : "";
  if (const auto it = response.headers.find("x-amz-bucket-region");
      region.empty() && it != response.headers.end()) {
    region = it->second;
  }
  if (!region.empty() && region != m_resolved.region &&
      (code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect" || response.status == 301)) {
    hint = "; the bucket is in region '" + region + "': set region=" + region;
  } else if (code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch") {
    hint = "; check the access key id and secret access key (from " + m_resolved.credentials_source + ")";
  } else if ((code == "ExpiredToken" || code == "TokenRefreshRequired") && m_role) {
    // Keys fetched at run time: fetch new ones, and try again with them.
    m_role->invalidate();
    throw StorageError(what + ": " + code + " (HTTP " + std::to_string(response.status) + "): " + message +
                           "; fetching new credentials from " + m_resolved.credentials_source,
                       true);
  } else if (code == "ExpiredToken" || code == "InvalidToken" || code == "TokenRefreshRequired") {
    hint = "; the session token (from " + m_resolved.credentials_source + ") is expired or invalid: renew it";
  } else if (code == "RequestTimeTooSkewed") {
    hint = "; the machine's clock is off: synchronise it (NTP)";
  } else if (response.status == 403) {
    hint = "; check that the credentials (from " + m_resolved.credentials_source +
           ") may list, read, write and delete objects in " + bucket;
  }
  throw StorageError(what + ": " + (code.empty() ? "" : code + " ") + "(HTTP " +
                         std::to_string(response.status) + "): " + message + hint,
                     s3::is_transient(response.status, code));
}

bool S3Storage::exists(const std::string& name, const std::string& what) const {
  Request request;
  request.method = "HEAD";
  request.object = name;
  const http::HttpResponse response = send(request, what);
  if (is_success(response.status)) return true;
  // A HEAD answer has no body, so a missing bucket looks like a missing key
  // here; the next list or write names it.
  if (response.status == 404) return false;
  fail(response, what);
}

void S3Storage::put(const std::string& key, ByteSource& data) { upload(key, data, false); }

bool S3Storage::put_if_absent(const std::string& key, ByteSource& data) { return upload(key, data, true); }

bool S3Storage::atomic_put_if_absent() const {
  try {
    return conditional_writes_supported();
  } catch (const Error& e) {
    // Not known yet, and not learnable now: the safe answer.
    if (log_enabled(LogLevel::warn)) {
      log(LogLevel::warn, "unable to learn whether the store honours conditional writes",
          {{"replica", url()}, {"error", e.what()}});
    }
    return false;
  }
}

bool S3Storage::conditional_writes_supported() const {
  std::lock_guard lock(m_conditional_mutex);
  if (m_conditional != Conditional::unknown) return m_conditional == Conditional::supported;
  const std::string name = m_names.object_name(std::string(k_probe_prefix) + random_hex(8));
  const std::string what = "unable to learn whether '" + url() + "' honours conditional writes";
  const std::string body = "walship probe: safe to delete\n";
  Conditional learnt = Conditional::unknown;
  auto attempt = [&]() {
    MemorySource source(as_bytes(body));
    Request request;
    request.method = "PUT";
    request.object = name;
    request.headers = {{"If-None-Match", "*"}};
    request.payload_hash = s3::sha256_hex(as_bytes(body));
    request.body = &source;
    return send(request, what);
  };
  const http::HttpResponse first = attempt();
  if (is_not_implemented(first)) {
    learnt = Conditional::unsupported;
  } else if (!is_success(first.status)) {
    fail(first, what);
  } else {
    const http::HttpResponse second = attempt();
    if (second.status == 412) {
      learnt = Conditional::supported;
    } else if (is_success(second.status) || is_not_implemented(second)) {
      learnt = Conditional::unsupported;
    }
    Request remove;
    remove.method = "DELETE";
    remove.object = name;
    try {
      send(remove, what);
    } catch (const StorageError&) {
      // A probe left behind costs a few bytes and is never listed.
    }
    if (learnt == Conditional::unknown) fail(second, what);
  }
  m_conditional = learnt;
  if (learnt == Conditional::unsupported && log_enabled(LogLevel::warn)) {
    log(LogLevel::warn,
        "the store ignores If-None-Match on writes: put-if-absent (leases, fencing) falls back to "
        "check-then-put, which two writers can race",
        {{"replica", url()}});
  }
  return learnt == Conditional::supported;
}

bool S3Storage::upload(const std::string& key, ByteSource& data, bool if_absent) {
  check_object_key(key, url());
  const std::string name = m_names.object_name(key);
  const std::string what = "unable to write '" + m_names.object_url(key) + "'";
  bool conditional = false;
  if (if_absent) {
    conditional = conditional_writes_supported();
    if (!conditional && exists(name, what)) return false;
  }
  if (data.size() > 0 && data.size() >= m_options.multipart_threshold) {
    return put_multipart(name, data, conditional, what);
  }
  return put_single(name, data, conditional, what);
}

bool S3Storage::put_single(const std::string& name, ByteSource& data, bool if_absent,
                           const std::string& what) {
  // The payload hash is signed, so the body is read twice: hashed, then sent.
  const uint64_t size = data.size();
  s3::Sha256 hash;
  std::vector<std::byte> buffer(static_cast<size_t>(std::min<uint64_t>(size, uint64_t{1} << 20)));
  data.rewind();
  uint64_t hashed = 0;
  while (hashed < size) {
    const size_t n = data.read(
        std::span(buffer).first(static_cast<size_t>(std::min<uint64_t>(buffer.size(), size - hashed))));
    if (n == 0) throw Failure(short_source(hashed, size, what));
    hash.update(std::span(buffer).first(n));
    hashed += n;
  }
  data.rewind();

  Request request;
  request.method = "PUT";
  request.object = name;
  if (if_absent) request.headers.emplace_back("If-None-Match", "*");
  request.payload_hash = hash.finish_hex();
  request.body = &data;
  const http::HttpResponse response = send(request, what);
  if (is_success(response.status)) return true;
  if (response.status == 412 && if_absent) return false;
  fail(response, what);
}

bool S3Storage::put_multipart(const std::string& name, ByteSource& data, bool if_absent,
                              const std::string& what) {
  const uint64_t size = data.size();
  const uint64_t part_size = s3::part_size_for(size, m_options.part_size);

  Request create;
  create.method = "POST";
  create.object = name;
  create.query = {{"uploads", ""}};
  const http::HttpResponse created = send(create, what);
  if (!is_success(created.status)) fail(created, what);
  std::string upload_id;
  try {
    upload_id = s3::parse_upload_id(created.body);
  } catch (const Failure& e) {
    throw StorageError(what + ": " + e.what(), true);
  }

  // Uploads one part, retrying transient failures itself: a part is in
  // memory, and starting the whole object over would cost far more.
  auto upload_part = [this, &name, &upload_id, &what](int number,
                                                      std::vector<std::byte> bytes) -> std::string {
    const std::string hash = s3::sha256_hex(bytes);
    const std::string part_what = what + " (part " + std::to_string(number) + ")";
    std::mt19937 random(std::random_device{}());
    for (int attempt = 1;; ++attempt) {
      MemorySource source(bytes);
      Request request;
      request.method = "PUT";
      request.object = name;
      request.query = {{"partNumber", std::to_string(number)}, {"uploadId", upload_id}};
      request.payload_hash = hash;
      request.body = &source;
      try {
        const http::HttpResponse response = send(request, part_what);
        if (is_success(response.status)) {
          const auto etag = response.headers.find("etag");
          if (etag == response.headers.end() || etag->second.empty()) {
            throw StorageError(part_what + ": the answer has no ETag", true);
          }
          return etag->second;
        }
        fail(response, part_what);
      } catch (const StorageError& e) {
        if (!e.transient() || attempt >= k_part_attempts) throw;
        const auto delay = std::chrono::milliseconds(100 << attempt);
        std::this_thread::sleep_for(delay / 2 +
                                    std::chrono::milliseconds(random() % (delay.count() / 2 + 1)));
      }
    }
  };

  std::vector<std::pair<int, std::string>> parts;
  std::deque<std::future<std::string>> in_flight;
  std::exception_ptr failure;
  auto collect = [&]() {
    try {
      parts.emplace_back(static_cast<int>(parts.size()) + 1, in_flight.front().get());
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
    in_flight.pop_front();
  };
  try {
    data.rewind();
    uint64_t offset = 0;
    int number = 0;
    while (offset < size && !failure) {
      const uint64_t length = std::min(part_size, size - offset);
      std::vector<std::byte> bytes(static_cast<size_t>(length));
      read_exactly(data, bytes, offset, size, what);
      offset += length;
      in_flight.push_back(std::async(std::launch::async, upload_part, ++number, std::move(bytes)));
      if (in_flight.size() >= k_parallel_parts) collect();
    }
  } catch (...) {
    if (!failure) failure = std::current_exception();
  }
  while (!in_flight.empty()) collect();
  if (failure) {
    abort_multipart(name, upload_id);
    std::rethrow_exception(failure);
  }

  const std::string body = s3::complete_multipart_body(parts);
  MemorySource source(as_bytes(body));
  Request complete;
  complete.method = "POST";
  complete.object = name;
  complete.query = {{"uploadId", upload_id}};
  if (if_absent) complete.headers.emplace_back("If-None-Match", "*");
  complete.payload_hash = s3::sha256_hex(as_bytes(body));
  complete.body = &source;
  http::HttpResponse response;
  try {
    response = send(complete, what);
  } catch (...) {
    abort_multipart(name, upload_id);
    throw;
  }
  // S3 may answer 200 and still fail: the error is then in the body.
  if (is_success(response.status) && !s3::parse_error(response.body)) return true;
  abort_multipart(name, upload_id);
  if (response.status == 412 && if_absent) return false;
  if (is_success(response.status)) response.status = 500;  // an error in a 200: S3 says to retry
  fail(response, what);
}

void S3Storage::abort_multipart(const std::string& name, const std::string& upload_id) {
  const std::string object = "s3://" + m_options.bucket + "/" + name;
  const std::string what = "unable to abort the multipart upload of '" + object + "'";
  Request request;
  request.method = "DELETE";
  request.object = name;
  request.query = {{"uploadId", upload_id}};
  try {
    const http::HttpResponse response = send(request, what);
    if (is_success(response.status) || response.status == 404) return;
    fail(response, what);
  } catch (const StorageError& e) {
    // The write has failed already and that error is the one to report; the
    // store's lifecycle rule for incomplete uploads cleans up after this.
    if (log_enabled(LogLevel::warn)) {
      log(LogLevel::warn,
          "unable to abort a multipart upload; its parts stay until the bucket's lifecycle rule "
          "for incomplete multipart uploads removes them",
          {{"object", object}, {"upload_id", upload_id}, {"error", e.what()}});
    }
  }
}

bool S3Storage::get(const std::string& key, ByteSink& out, const ByteRange& range) {
  check_object_key(key, url());
  const std::string name = m_names.object_name(key);
  const std::string what = "unable to read '" + m_names.object_url(key) + "'";
  if (range.length && *range.length == 0) return exists(name, what);
  Request request;
  request.object = name;
  if (range.offset > 0 || range.length) {
    std::string header = "bytes=" + std::to_string(range.offset) + "-";
    if (range.length && *range.length <= UINT64_MAX - range.offset) {
      header += std::to_string(range.offset + *range.length - 1);
    }
    request.headers.emplace_back("Range", header);
  }
  LimitSink limited(out, range.length);
  request.sink = &limited;
  const http::HttpResponse response = send(request, what);
  if (is_success(response.status)) return true;
  if (response.status == 416) return true;  // the object exists; the range starts past its end
  if (response.status == 404 && error_code(response) != "NoSuchBucket") return false;
  fail(response, what);
}

std::vector<ObjectInfo> S3Storage::list(const std::string& prefix) {
  const std::string what = "unable to list '" + url() + (prefix.empty() ? "" : "/" + prefix) + "'";
  std::vector<ObjectInfo> out;
  std::string token;
  for (;;) {
    Request request;
    request.query = {{"list-type", "2"}, {"prefix", m_names.object_name(prefix)}};
    if (!token.empty()) request.query.emplace_back("continuation-token", token);
    // 1000 entries of keys up to 1 KiB each, with their metadata.
    request.max_body = size_t{16} << 20;
    const http::HttpResponse response = send(request, what);
    if (!is_success(response.status)) fail(response, what);
    if (response.body_truncated) throw StorageError(what + ": a listing page is larger than 16 MiB", false);
    s3::ListPage page;
    try {
      page = s3::parse_list_page(response.body);
    } catch (const Failure& e) {
      throw StorageError(what + ": " + e.what(), true);
    }
    for (s3::ListPage::Entry& entry : page.entries) {
      std::optional<std::string> key = m_names.key_of(entry.key);
      if (!key || !is_valid_object_key(*key) || key->starts_with(k_probe_prefix)) continue;
      out.push_back({std::move(*key), entry.size});
    }
    if (!page.truncated) break;
    if (page.next_continuation_token.empty() || page.next_continuation_token == token) {
      throw StorageError(what + ": the listing is truncated but gives no new continuation token", true);
    }
    token = page.next_continuation_token;
  }
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

void S3Storage::remove(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) check_object_key(key, url());
  for (size_t start = 0; start < keys.size(); start += k_delete_batch) {
    const size_t end = std::min(keys.size(), start + k_delete_batch);
    std::vector<std::string> names;
    for (size_t i = start; i < end; ++i) names.push_back(m_names.object_name(keys[i]));
    const std::string what = "unable to remove " + std::to_string(names.size()) + " objects from '" + url() +
                             "' (first '" + keys[start] + "')";
    const std::string body = s3::delete_request_body(names);
    MemorySource source(as_bytes(body));
    Request request;
    request.method = "POST";
    request.query = {{"delete", ""}};
    request.headers = {{"Content-MD5", s3::content_md5(body)}, {"Content-Type", "application/xml"}};
    request.payload_hash = s3::sha256_hex(as_bytes(body));
    request.body = &source;
    const http::HttpResponse response = send(request, what);
    if (!is_success(response.status)) fail(response, what);
    std::vector<s3::DeleteFailure> failures;
    try {
      failures = s3::parse_delete_result(response.body);
    } catch (const Failure& e) {
      throw StorageError(what + ": " + e.what(), true);
    }
    for (const s3::DeleteFailure& f : failures) {
      if (f.code == "NoSuchKey") continue;
      throw StorageError(
          "unable to remove 's3://" + m_options.bucket + "/" + f.key + "': " + f.code + ": " + f.message,
          s3::is_transient(0, f.code));
    }
  }
}

}  // namespace walship
