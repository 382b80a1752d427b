#include "backends/registry.h"

#include <algorithm>
#include <span>
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

using SpecsFn = std::span<const OptionSpec> (*)();

std::span<const OptionSpec> no_options() { return {}; }

struct Backend {
  std::string_view scheme;
  OpenFn open;  // nullptr: a scheme walship knows but this build does not have yet
  SpecsFn options;
};

// The one place backends are chosen. Adding one: include its header and set
// its function here.
constexpr Backend k_backends[] = {
    {"file", open_file, no_options},
    {"s3", open_s3_storage, s3::option_specs},
    {"gs", open_gcs_storage, gcs_option_specs},
    {"sftp", open_sftp_storage, sftp_option_specs},
};

}  // namespace

void check_replica_setting(const std::string& url, const std::string& name, SettingType type,
                           const std::string& value) {
  const std::string shown = redact_url(url);
  if (url.starts_with('/')) {
    throw UsageError("invalid settings for replica '" + url + "': file replicas take no options ('" + name +
                     "')");
  }
  std::string scheme;
  try {
    scheme = parse_url(url).scheme;
  } catch (const UsageError&) {
    return;  // the URL's own error comes when it is opened, with what to write instead
  }
  for (const Backend& backend : k_backends) {
    if (backend.scheme != scheme) continue;
    const auto specs = backend.options();
    const auto spec =
        std::find_if(specs.begin(), specs.end(), [&name](const OptionSpec& o) { return o.name == name; });
    if (spec == specs.end()) {
      std::string known;
      for (const OptionSpec& o : specs) known += (known.empty() ? "" : ", ") + std::string(o.name);
      throw UsageError("unknown option '" + name + "' for replica '" + shown + "': " + scheme + ":// takes " +
                       (known.empty() ? "no options" : known));
    }
    const bool type_fits = type == SettingType::string ||
                           (type == SettingType::boolean && spec->kind == OptionKind::boolean) ||
                           (type == SettingType::integer && spec->kind == OptionKind::bytes);
    if (!type_fits) {
      const char* wanted = spec->kind == OptionKind::boolean ? "true or false"
                           : spec->kind == OptionKind::bytes ? "a number of bytes"
                                                             : "a string (in quotes)";
      throw UsageError("invalid option " + name + "=" + value + " for replica '" + shown + "': give " +
                       wanted);
    }
    check_option_value(name, value, spec->kind, shown);
    return;
  }
}

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
