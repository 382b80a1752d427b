// The gs:// backend: Google Cloud Storage through its JSON API over libcurl.
//
//   gs://bucket/prefix[?option=value...]
//
// Options (URL query or the replica's settings in walship.toml):
//   credentials-file     service-account key or external_account JSON (default:
//                        $GOOGLE_APPLICATION_CREDENTIALS, then the GCE metadata
//                        server; $STORAGE_EMULATOR_HOST: no auth)
//   endpoint             base URL of the API (default https://storage.googleapis.com)
//   resumable-threshold  objects of at least this many bytes use a resumable upload (default 8 MiB)
//   upload-chunk-size    bytes per resumable chunk, a multiple of 256 KiB (default 8 MiB)
// No option takes an empty value.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backends/gcs/gcs_auth.h"
#include "backends/http/http_client.h"
#include "backends/url.h"
#include "lib/storage/storage.h"

namespace walship {

struct GcsOptions {
  std::string bucket;
  std::string prefix;  // without leading or trailing '/'; may be empty
  std::string credentials_file;
  std::string endpoint;  // empty: the emulator's, or https://storage.googleapis.com
  uint64_t resumable_threshold = uint64_t{8} << 20;
  uint64_t upload_chunk_size = uint64_t{8} << 20;
};

// The options gs:// takes, with their kinds.
std::span<const OptionSpec> gcs_option_specs();

// Validates a parsed gs:// URL and its options. Throws UsageError naming the
// (redacted) URL for a missing bucket, a user/port, an unknown option or a bad
// number. Pure.
GcsOptions parse_gcs_url(const ParsedUrl& parsed, const std::string& url);

// The registry's entry point: parse_gcs_url(), then a GcsStorage.
std::unique_ptr<Storage> open_gcs_storage(const ParsedUrl& parsed, const std::string& url);

class GcsStorage : public Storage {
 public:
  // Reads credentials (UsageError for a bad key file); no network until the
  // first operation.
  explicit GcsStorage(GcsOptions options);
  ~GcsStorage() override;

  std::string url() const override;
  // "gs", the credentials' source and the current token's expiry.
  StorageFacts facts() const override;

  // Media upload (one request) below resumable_threshold, a resumable
  // session in upload_chunk_size chunks above it; a chunk that fails is
  // resumed from the offset the server reports. GCS makes the object visible
  // only when the upload completes.
  void put(const std::string& key, ByteSource& data) override;

  // The same with ifGenerationMatch=0: the server refuses (412) if the object exists.
  bool put_if_absent(const std::string& key, ByteSource& data) override;

  // alt=media with a Range header.
  bool get(const std::string& key, ByteSink& out, const ByteRange& range = {}) override;

  // Follows nextPageToken until the last page.
  std::vector<ObjectInfo> list(const std::string& prefix) override;

  // One DELETE per key; 404 is success.
  void remove(const std::vector<std::string>& keys) override;

 private:
  // Returns false on 412 when `if_absent`.
  bool upload(const std::string& key, ByteSource& data, bool if_absent);
  bool upload_media(const std::string& key, ByteSource& data, bool if_absent);
  bool upload_resumable(const std::string& key, ByteSource& data, bool if_absent);

  // Sends `request` with the authorization header; retries once after a 401
  // with a fresh token. A transport failure throws a transient StorageError
  // "<what>: <cause>".
  http::HttpResponse send(http::HttpRequest request, const std::string& what);

  // Throws the StorageError for an unexpected status, classified.
  [[noreturn]] void fail(const http::HttpResponse& response, const std::string& what) const;

  GcsOptions m_options;
  // From m_options: how the bucket, the prefix and the keys are named.
  BucketNames m_names;
  std::string m_base;  // API base URL, no trailing '/'
  http::HttpClient m_http;
  gcs::Credentials m_credentials;
};

}  // namespace walship
