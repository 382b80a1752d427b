// Chooses the backend for a replica URL from an explicit table keyed by URL
// scheme (registry.cpp). Adding a backend is one line in that table.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "backends/storage.h"
#include "backends/url.h"  // redact_url(), for callers that log replica URLs

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

}  // namespace walship
