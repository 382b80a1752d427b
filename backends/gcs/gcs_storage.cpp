#include "backends/gcs/gcs_storage.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "lib/util/error.h"
#include "lib/util/log.h"
#include "lib/util/percent_encode.h"

namespace walship {

namespace {

constexpr std::string_view k_default_endpoint = "https://storage.googleapis.com";
constexpr uint64_t k_chunk_granularity = uint64_t{256} << 10;  // resumable chunks are multiples of this
// Resumes of one resumable upload after a failed chunk before giving the
// failure to RetryingStorage (which starts a fresh upload).
constexpr int k_max_resumes = 5;

constexpr OptionSpec k_options[] = {{"credentials-file", OptionKind::text},
                                    {"endpoint", OptionKind::text},
                                    {"resumable-threshold", OptionKind::bytes},
                                    {"upload-chunk-size", OptionKind::bytes}};

// Google's error body: {"error": {"code": 403, "message": "..."}}.
std::string google_message(const http::HttpResponse& response) {
  const auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_object() &&
      doc["error"].contains("message") && doc["error"]["message"].is_string()) {
    return doc["error"]["message"].get<std::string>();
  }
  std::string text = response.body.substr(0, 200);
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

bool is_transient_status(long status) { return status == 408 || status == 429 || status >= 500; }

// Rewinds `data` and reads `offset` bytes past, to resume an upload there.
void seek_source(ByteSource& data, uint64_t offset) {
  data.rewind();
  std::vector<std::byte> buffer(64 << 10);
  while (offset > 0) {
    const size_t n =
        data.read(std::span(buffer.data(), static_cast<size_t>(std::min<uint64_t>(offset, buffer.size()))));
    if (n == 0) throw Failure("unable to resume an upload: the source ended early");
    offset -= n;
  }
}

}  // namespace

std::span<const OptionSpec> gcs_option_specs() { return k_options; }

GcsOptions parse_gcs_url(const ParsedUrl& parsed, const std::string& url) {
  const std::string shown = redact_url(url);
  GcsOptions options;
  options.bucket = bucket_url_bucket(parsed, shown, "gs");
  options.prefix = bucket_url_prefix(parsed, shown);
  for (const auto& [name, value] : parsed.query) {
    const auto spec = std::find_if(std::begin(k_options), std::end(k_options),
                                   [&name](const OptionSpec& o) { return o.name == name; });
    if (spec == std::end(k_options)) {
      throw UsageError(
          "unknown option '" + name + "' for replica '" + shown +
          "': gs:// takes credentials-file, endpoint, resumable-threshold and upload-chunk-size");
    }
    check_option_value(name, value, spec->kind, shown);
    if (name == "credentials-file") options.credentials_file = value;
    if (name == "endpoint") {
      if (!value.starts_with("http://") && !value.starts_with("https://")) {
        throw UsageError("invalid option endpoint='" + value + "' for replica '" + shown +
                         "': expected an http:// or https:// URL");
      }
      options.endpoint = value;
      while (options.endpoint.ends_with('/')) options.endpoint.pop_back();
    }
    if (name == "resumable-threshold") options.resumable_threshold = parse_bytes_option(name, value, shown);
    if (name == "upload-chunk-size") {
      options.upload_chunk_size = parse_bytes_option(name, value, shown);
      if (options.upload_chunk_size == 0 || options.upload_chunk_size % k_chunk_granularity != 0) {
        throw UsageError("invalid option upload-chunk-size='" + value + "' for replica '" + shown +
                         "': GCS needs a positive multiple of 262144 (256 KiB)");
      }
    }
  }
  return options;
}

std::unique_ptr<Storage> open_gcs_storage(const ParsedUrl& parsed, const std::string& url) {
  return std::make_unique<GcsStorage>(parse_gcs_url(parsed, url));
}

GcsStorage::GcsStorage(GcsOptions options)
    : m_options(std::move(options)),
      m_names{"gs", m_options.bucket, m_options.prefix},
      m_credentials(m_http, m_options.credentials_file) {
  if (!m_options.endpoint.empty()) {
    m_base = m_options.endpoint;
  } else if (m_credentials.emulator()) {
    m_base = *m_credentials.emulator();
  } else {
    m_base = k_default_endpoint;
  }
}

GcsStorage::~GcsStorage() = default;

StorageFacts GcsStorage::facts() const { return {"gs", m_credentials.source(), m_credentials.expires_ms()}; }

std::string GcsStorage::url() const { return m_names.url(); }

http::HttpResponse GcsStorage::send(http::HttpRequest request, const std::string& what) {
  const size_t plain_headers = request.headers.size();
  for (int attempt = 0;; ++attempt) {
    request.headers.resize(plain_headers);
    const std::string auth = m_credentials.authorization_header();
    if (!auth.empty()) request.headers.push_back(auth);
    http::TransportError error;
    http::HttpResponse response = m_http.perform(request, error);
    if (response.status == 0) {
      throw StorageError(what + ": " + error.message + " (" + m_base + ")", error.transient);
    }
    // A token revoked or expired early: one more try with a fresh one.
    if (response.status == 401 && attempt == 0 && !auth.empty()) {
      m_credentials.invalidate();
      if (request.body == nullptr) continue;
      // The body was consumed: RetryingStorage rewinds it and tries again.
      throw StorageError(what + ": HTTP 401: the access token was refused; retrying with a new one", true);
    }
    return response;
  }
}

void GcsStorage::fail(const http::HttpResponse& response, const std::string& what) const {
  const std::string message = google_message(response);
  if (response.status == 404 && message.find("bucket") != std::string::npos) {
    throw StorageError(what + ": bucket '" + m_options.bucket + "' does not exist", false);
  }
  std::string hint;
  if (response.status == 401) hint = "; check the credentials";
  if (response.status == 403)
    hint = "; check the service account's permissions on bucket '" + m_options.bucket + "'";
  throw StorageError(what + ": HTTP " + std::to_string(response.status) + ": " + message + hint,
                     is_transient_status(response.status));
}

void GcsStorage::put(const std::string& key, ByteSource& data) { upload(key, data, false); }

bool GcsStorage::put_if_absent(const std::string& key, ByteSource& data) { return upload(key, data, true); }

bool GcsStorage::upload(const std::string& key, ByteSource& data, bool if_absent) {
  check_object_key(key, url());
  if (data.size() > 0 && data.size() >= m_options.resumable_threshold) {
    return upload_resumable(key, data, if_absent);
  }
  return upload_media(key, data, if_absent);
}

bool GcsStorage::upload_media(const std::string& key, ByteSource& data, bool if_absent) {
  const std::string what = "unable to write '" + m_names.object_url(key) + "'";
  http::HttpRequest request;
  request.method = "POST";
  request.url = m_base + "/upload/storage/v1/b/" + percent_encode(m_options.bucket) +
                "/o?uploadType=media&fields=generation&name=" + percent_encode(m_names.object_name(key)) +
                (if_absent ? "&ifGenerationMatch=0" : "");
  request.headers = {"Content-Type: application/octet-stream"};
  request.body = &data;
  request.body_size = data.size();
  const http::HttpResponse response = send(request, what);
  if (response.status == 200 || response.status == 201) return true;
  if (response.status == 412 && if_absent) return false;
  fail(response, what);
}

bool GcsStorage::upload_resumable(const std::string& key, ByteSource& data, bool if_absent) {
  const std::string what = "unable to write '" + m_names.object_url(key) + "'";
  const uint64_t size = data.size();

  http::HttpRequest start;
  start.method = "POST";
  start.url = m_base + "/upload/storage/v1/b/" + percent_encode(m_options.bucket) +
              "/o?uploadType=resumable&fields=generation&name=" + percent_encode(m_names.object_name(key)) +
              (if_absent ? "&ifGenerationMatch=0" : "");
  start.headers = {"X-Upload-Content-Type: application/octet-stream",
                   "X-Upload-Content-Length: " + std::to_string(size)};
  const http::HttpResponse started = send(start, what);
  if (started.status == 412 && if_absent) return false;
  if (started.status != 200 && started.status != 201) fail(started, what);
  const auto location = started.headers.find("location");
  if (location == started.headers.end() || location->second.empty()) {
    throw StorageError(what + ": the resumable upload answer has no Location", true);
  }
  const std::string session = location->second;

  // Reads the persisted size from a 308's "Range: bytes=0-N" (none: nothing yet).
  auto persisted = [&](const http::HttpResponse& response) -> uint64_t {
    const auto range = response.headers.find("range");
    if (range == response.headers.end()) return 0;
    const size_t dash = range->second.find('-');
    uint64_t last = 0;
    if (dash == std::string::npos ||
        std::from_chars(range->second.data() + dash + 1, range->second.data() + range->second.size(), last)
                .ec != std::errc()) {
      throw StorageError(what + ": bad Range '" + range->second + "' in a resumable upload answer", true);
    }
    return last + 1;
  };

  uint64_t offset = 0;
  int resumes = 0;
  data.rewind();
  for (;;) {
    const uint64_t chunk = std::min(m_options.upload_chunk_size, size - offset);
    http::HttpRequest put;
    put.method = "PUT";
    put.url = session;
    put.headers = {"Content-Range: bytes " + std::to_string(offset) + "-" +
                   std::to_string(offset + chunk - 1) + "/" + std::to_string(size)};
    put.body = &data;
    put.body_size = chunk;
    http::HttpResponse response;
    bool failed = false;
    std::string cause;
    try {
      response = send(put, what);
      if (is_transient_status(response.status)) {
        failed = true;
        cause = "HTTP " + std::to_string(response.status) + ": " + google_message(response);
      }
    } catch (const StorageError& e) {
      if (!e.transient()) throw;
      failed = true;
      cause = e.what();
    }
    while (failed) {
      // Ask the session how much it kept, and go on from there; the question
      // itself may fail too, so it is asked again after a short pause.
      if (++resumes > k_max_resumes) throw StorageError(cause, true);
      if (log_enabled(LogLevel::info)) {
        log(LogLevel::info, "resuming upload",
            {{"object", m_names.object_url(key)}, {"offset", offset}, {"error", cause}});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50) * (1 << resumes));
      http::HttpRequest status;
      status.method = "PUT";
      status.url = session;
      status.headers = {"Content-Range: bytes */" + std::to_string(size)};
      try {
        response = send(status, what);
        failed = is_transient_status(response.status);
        if (failed) cause = "HTTP " + std::to_string(response.status) + ": " + google_message(response);
      } catch (const StorageError& e) {
        if (!e.transient()) throw;
        cause = e.what();
      }
    }
    if (response.status == 200 || response.status == 201) return true;
    if (response.status == 412 && if_absent) return false;
    if (response.status == 404 || response.status == 410) {
      // The session expired or was cancelled: only a new upload can go on.
      throw StorageError(what + ": the resumable upload session ended (HTTP " +
                             std::to_string(response.status) + "); starting over",
                         true);
    }
    if (response.status != 308) fail(response, what);
    const uint64_t next = persisted(response);
    if (next > size) throw StorageError(what + ": the server kept more bytes than were sent", false);
    if (next != offset + chunk) seek_source(data, next);
    offset = next;
    if (offset == size) {
      throw StorageError(what + ": the server has every byte but did not finish the upload", true);
    }
  }
}

bool GcsStorage::get(const std::string& key, ByteSink& out, const ByteRange& range) {
  check_object_key(key, url());
  const std::string what = "unable to read '" + m_names.object_url(key) + "'";
  http::HttpRequest request;
  const std::string object = m_base + "/storage/v1/b/" + percent_encode(m_options.bucket) + "/o/" +
                             percent_encode(m_names.object_name(key));
  if (range.length && *range.length == 0) {
    // Nothing to read: only whether the object exists.
    request.url = object + "?fields=size";
    const http::HttpResponse response = send(request, what);
    if (response.status == 200) return true;
    if (response.status == 404 && google_message(response).find("bucket") == std::string::npos) return false;
    fail(response, what);
  }
  request.url = object + "?alt=media";
  if (range.offset > 0 || range.length) {
    std::string header = "Range: bytes=" + std::to_string(range.offset) + "-";
    if (range.length && *range.length <= UINT64_MAX - range.offset) {
      header += std::to_string(range.offset + *range.length - 1);
    }
    request.headers.push_back(header);
  }
  LimitSink limited(out, range.length);
  request.sink = &limited;
  const http::HttpResponse response = send(request, what);
  if (response.status == 200 || response.status == 206) return true;
  if (response.status == 416) return true;  // the object exists; the range starts past its end
  if (response.status == 404 && google_message(response).find("bucket") == std::string::npos) return false;
  fail(response, what);
}

std::vector<ObjectInfo> GcsStorage::list(const std::string& prefix) {
  const std::string what = "unable to list '" + url() + (prefix.empty() ? "" : "/" + prefix) + "'";
  std::vector<ObjectInfo> out;
  std::string page_token;
  for (;;) {
    http::HttpRequest request;
    request.url =
        m_base + "/storage/v1/b/" + percent_encode(m_options.bucket) +
        "/o?fields=items(name,size),nextPageToken&prefix=" + percent_encode(m_names.object_name(prefix));
    if (!page_token.empty()) request.url += "&pageToken=" + percent_encode(page_token);
    const http::HttpResponse response = send(request, what);
    if (response.status == 404) {
      throw StorageError(what + ": bucket '" + m_options.bucket + "' does not exist", false);
    }
    if (response.status != 200) fail(response, what);
    const auto doc = nlohmann::json::parse(response.body, nullptr, false);
    if (!doc.is_object()) throw StorageError(what + ": the answer is not JSON", true);
    if (doc.contains("items") && doc["items"].is_array()) {
      for (const auto& item : doc["items"]) {
        if (!item.contains("name") || !item["name"].is_string()) continue;
        const std::string name = item["name"].get<std::string>();
        std::optional<std::string> key = m_names.key_of(name);
        if (!key || !is_valid_object_key(*key)) continue;  // not something walship could have written
        uint64_t size = 0;
        if (item.contains("size") && item["size"].is_string()) {
          const std::string text = item["size"].get<std::string>();
          std::from_chars(text.data(), text.data() + text.size(), size);
        }
        out.push_back({std::move(*key), size});
      }
    }
    if (!doc.contains("nextPageToken") || !doc["nextPageToken"].is_string()) break;
    page_token = doc["nextPageToken"].get<std::string>();
    if (page_token.empty()) break;
  }
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

void GcsStorage::remove(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) check_object_key(key, url());
  for (const std::string& key : keys) {
    const std::string what = "unable to remove '" + m_names.object_url(key) + "'";
    http::HttpRequest request;
    request.method = "DELETE";
    request.url = m_base + "/storage/v1/b/" + percent_encode(m_options.bucket) + "/o/" +
                  percent_encode(m_names.object_name(key));
    const http::HttpResponse response = send(request, what);
    if (response.status == 200 || response.status == 204) continue;
    if (response.status == 404 && google_message(response).find("bucket") == std::string::npos) continue;
    fail(response, what);
  }
}

}  // namespace walship
