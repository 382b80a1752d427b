// The s3:// backend: Amazon S3 and S3-compatible stores (MinIO, Cloudflare
// R2, Backblaze B2, Wasabi, Tigris, GCS interop) over libcurl, signed with
// SigV4 (s3_signer). URL forms, options and where credentials come from are
// in s3_options.h.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backends/http/http_client.h"
#include "backends/s3/aws_credentials.h"
#include "backends/s3/s3_options.h"
#include "backends/s3/s3_signer.h"
#include "backends/url.h"
#include "lib/storage/storage.h"

namespace walship {

// The registry's entry point: parse_s3_url(), resolve(), then an S3Storage.
std::unique_ptr<Storage> open_s3_storage(const ParsedUrl& parsed, const std::string& url);

namespace s3 {

// Whether a status and S3 error code may clear up on a retry: 5xx, 429, 408,
// SlowDown, RequestTimeout, InternalError... but never 403 or 404. Pure.
bool is_transient(long status, const std::string& code);

// The part size for an object of `size` bytes: `part_size`, grown (in whole
// MiB) so that the object fits in 10000 parts. Pure.
uint64_t part_size_for(uint64_t size, uint64_t part_size);

}  // namespace s3

class S3Storage : public Storage {
 public:
  // No network until the first operation.
  S3Storage(s3::Options options, s3::Resolved resolved);
  ~S3Storage() override;

  std::string url() const override;

  // One PutObject below multipart_threshold, with the body's real SHA-256 in
  // x-amz-content-sha256 (the source is hashed, rewound, then sent); above
  // it, a multipart upload whose parts (each hashed in memory) go up to four
  // at a time, and which is aborted if anything fails.
  void put(const std::string& key, ByteSource& data) override;

  // The same with If-None-Match: *, when the store honours it (learnt once
  // per storage by writing a probe object twice under the prefix and
  // expecting 412 the second time). Where it does not, the fallback is a
  // check then a put: not atomic, and atomic_put_if_absent() says so.
  bool put_if_absent(const std::string& key, ByteSource& data) override;
  bool atomic_put_if_absent() const override;
  // A failed refresh of role credentials (aws_credentials.h), while the
  // current ones still hold.
  std::string warning() const override;
  // "s3", and resolve()'s credentials_source, or the role's (with the
  // instance profile's role name and the keys' expiry once fetched).
  StorageFacts facts() const override;

  // GetObject with a Range header.
  bool get(const std::string& key, ByteSink& out, const ByteRange& range = {}) override;

  // ListObjectsV2, following continuation tokens to the last page.
  std::vector<ObjectInfo> list(const std::string& prefix) override;

  // DeleteObjects in batches of 1000 keys (with Content-MD5).
  void remove(const std::vector<std::string>& keys) override;

 private:
  struct Request {
    std::string method = "GET";
    std::string object;  // full object name (prefix included); empty: the bucket
    std::vector<std::pair<std::string, std::string>> query;  // decoded
    std::vector<std::pair<std::string, std::string>> headers;
    std::string payload_hash = std::string(s3::k_empty_payload_hash);
    ByteSource* body = nullptr;
    ByteSink* sink = nullptr;
    size_t max_body = size_t{1} << 20;  // of an answer kept in memory (HttpRequest::max_body)
  };

  // Signs and sends `request`. A transport failure throws a StorageError
  // "<what>: <cause>" (transient unless libcurl says it will not clear up).
  http::HttpResponse send(const Request& request, const std::string& what) const;

  // Throws the StorageError for an unexpected answer, classified, quoting
  // S3's Code and Message (never the request's signature).
  [[noreturn]] void fail(const http::HttpResponse& response, const std::string& what) const;

  bool upload(const std::string& key, ByteSource& data, bool if_absent);
  bool put_single(const std::string& name, ByteSource& data, bool if_absent, const std::string& what);
  bool put_multipart(const std::string& name, ByteSource& data, bool if_absent, const std::string& what);
  void abort_multipart(const std::string& name, const std::string& upload_id);

  // Learns (once) whether the store honours If-None-Match: * on PutObject.
  bool conditional_writes_supported() const;

  // Whether the object exists (HEAD).
  bool exists(const std::string& name, const std::string& what) const;

  s3::Options m_options;
  // From m_options: how the bucket, the prefix and the keys are named.
  BucketNames m_names;
  s3::Resolved m_resolved;
  std::string m_scheme;     // "https"
  std::string m_authority;  // "host[:port]" of the endpoint
  mutable http::HttpClient m_http;
  std::unique_ptr<s3::RoleCredentials> m_role;  // keys fetched at run time, when no keys were given

  enum class Conditional { unknown, supported, unsupported };
  mutable std::mutex m_conditional_mutex;
  mutable Conditional m_conditional = Conditional::unknown;
};

}  // namespace walship
