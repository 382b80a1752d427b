#include "backends/registry.h"

#include <string_view>

#include "backends/file/file_storage.h"
#include "backends/gcs/gcs_storage.h"
#include "backends/s3/s3_storage.h"
#include "backends/sftp/sftp_storage.h"
#include "lib/util/error.h"

namespace walship {

namespace {

constexpr std::string_view k_url_forms =
    "use file:///absolute/path, s3://bucket/prefix, gs://bucket/prefix or sftp://user@host/path";

// `parsed.query` already holds the merged URL options and settings.
using OpenFn = std::unique_ptr<Storage> (*)(const ParsedUrl& parsed, const std::string& url);

std::unique_ptr<Storage> open_file(const ParsedUrl& parsed, const std::string& url) {
  const std::string shown = redact_url(url);
  if (!parsed.host.empty() && parsed.host != "localhost") {
    throw UsageError("invalid replica URL '" + shown + "': file:// URLs cannot name a remote host ('" +
                     parsed.host + "'); use file:///absolute/path for this machine or sftp://user@" +
                     parsed.host + "/path for another one");
  }
  if (!parsed.user.empty() || parsed.password || parsed.port) {
    throw UsageError("invalid replica URL '" + shown +
                     "': file:// URLs take no user or port; use file:///absolute/path");
  }
  if (!parsed.query.empty()) {
    // Rejected rather than ignored: a misspelt option must not pass silently.
    throw UsageError("invalid replica URL '" + shown + "': file:// URLs take no options ('" +
                     parsed.query.begin()->first + "')");
  }
  if (!parsed.path.starts_with('/')) {
    throw UsageError("invalid replica URL '" + shown +
                     "': the path must be absolute; use file:///absolute/path");
  }
  return std::make_unique<FileStorage>(parsed.path);
}

struct Backend {
  std::string_view scheme;
  OpenFn open;  // nullptr: a scheme walship knows but this build does not have yet
};

// The one place backends are chosen. Adding one: include its header and set
// its function here.
constexpr Backend k_backends[] = {
    {"file", open_file},
    {"s3", open_s3_storage},
    {"gs", open_gcs_storage},
    {"sftp", open_sftp_storage},
};

}  // namespace

std::unique_ptr<Storage> open_storage(const std::string& url, const StorageSettings& settings) {
  // A plain absolute path is the common case on the command line; it is a
  // path, not a URL, so it is not percent-decoded.
  if (url.starts_with('/')) {
    if (!settings.empty()) {
      throw UsageError("invalid settings for replica '" + url + "': file replicas take no options ('" +
                       settings.begin()->first + "')");
    }
    return std::make_unique<FileStorage>(url);
  }

  if (url.find(':') == std::string::npos) {
    throw UsageError("invalid replica URL '" + url + "': " + std::string(k_url_forms));
  }
  ParsedUrl parsed;
  try {
    parsed = parse_url(url);
  } catch (const UsageError& e) {
    throw UsageError(std::string(e.what()) + "; " + std::string(k_url_forms));
  }
  for (const auto& [name, value] : settings) {
    if (parsed.query.contains(name)) {
      throw UsageError("invalid settings for replica '" + redact_url(url) + "': option '" + name +
                       "' is given both in the URL and in the configuration; keep one");
    }
    parsed.query[name] = value;
  }
  for (const Backend& backend : k_backends) {
    if (backend.scheme != parsed.scheme) continue;
    if (backend.open == nullptr) {
      throw UsageError("unable to open replica '" + redact_url(url) + "': the " + parsed.scheme +
                       ":// backend is not built into this walship yet; use file:///absolute/path");
    }
    return backend.open(parsed, url);
  }
  throw UsageError("unsupported replica URL scheme '" + parsed.scheme + "' in '" + redact_url(url) +
                   "': use file://, s3://, gs:// or sftp://");
}

}  // namespace walship
