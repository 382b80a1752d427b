// Chooses the backend for a replica URL from an explicit table keyed by URL
// scheme (registry.cpp). Adding a backend is one line in that table.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "backends/url.h"  // redact_url(), for callers that log replica URLs
#include "lib/storage/storage.h"

namespace walship {

// Opens the storage a replica URL names: "file:///abs/path" (percent-decoded;
// host empty or "localhost") or a plain absolute path "/abs/path"; s3://,
// gs:// and sftp:// (their forms are in each backend's header). Throws UsageError, with
// a message saying what to write instead, for a relative path, a remote file
// host, an unknown scheme or a scheme whose backend is not built. Opening does
// no I/O for file://: a missing directory is created by the first put.
// The returned storage does not retry; wrap it in RetryingStorage.
//
// `settings` are per-replica options from walship.toml (credentials, endpoint,
// region...). Their names are the URL query option names; a setting given in
// both places is a UsageError rather than a silent pick. A backend rejects a
// name it does not know, naming it.
using StorageSettings = std::map<std::string, std::string>;
std::unique_ptr<Storage> open_storage(const std::string& url, const StorageSettings& settings = {});

// How a walship.toml setting was written: in quotes, or a bare number or
// boolean.
enum class SettingType { string, integer, boolean };

// Checks one walship.toml setting of the replica `url` without opening it:
// its backend takes an option `name` of that type (a bare number only for a
// size, a bare boolean only for a boolean: `session-token = 12345` is an
// error) and its value passes check_option_value (url.h). Throws UsageError
// naming the option and the redacted URL; the caller adds the line. A URL
// that does not parse is left to open_storage, which says what to write.
void check_replica_setting(const std::string& url, const std::string& name, SettingType type,
                           const std::string& value);

}  // namespace walship
