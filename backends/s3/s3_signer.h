// AWS Signature Version 4 (header form) for S3 requests: canonical request,
// string to sign, signing key and the Authorization header value. Pure: no
// I/O, no clock (the caller passes the request time), so every step is
// tested against AWS's published vectors and an independent implementation.
//
// S3 signs the path exactly as sent: no normalization of '.', '..' or '//'
// segments, and the path is encoded once (by the caller), not twice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace walship::s3 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty: long-term keys (no x-amz-security-token)
};

struct SigningRequest {
  std::string method;         // "GET"
  std::string canonical_uri;  // the path as sent, already percent-encoded ("/bucket/a%20b"); empty means "/"
  std::vector<std::pair<std::string, std::string>> query;    // decoded names and values, any order
  std::vector<std::pair<std::string, std::string>> headers;  // every header to sign, host and x-amz-*
                                                             // included; names any case, values raw
  std::string payload_hash;  // lower-case hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
};

// The SHA-256 of an empty body, in lower-case hex.
inline constexpr std::string_view k_empty_payload_hash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// AWS's UriEncode: unreserved bytes (A-Za-z0-9-._~) kept, every other byte
// %XX in upper-case hex; '/' kept unless `encode_slash`. The one encoder
// (lib/util/percent_encode.h) under the name the SigV4 documents use.
std::string uri_encode(std::string_view text, bool encode_slash);

// The SigV4 canonical request:
//   METHOD \n URI \n QUERY \n HEADERS \n SIGNED-HEADERS \n PAYLOAD-HASH
// Query pairs are encoded (slashes too) and sorted by encoded name, then
// value; header names are lower-cased, values trimmed with inner whitespace
// runs collapsed to one space, same-name headers joined by ',' in the order
// given, and the headers sorted by name.
std::string canonical_request(const SigningRequest& request);

// "host;x-amz-date;...": the lower-cased, sorted, de-duplicated header names.
std::string signed_headers(const SigningRequest& request);

// "AWS4-HMAC-SHA256\n<amz_date>\n<date>/<region>/<service>/aws4_request\n<hex sha256 of canonical_request>".
// `amz_date` is the basic ISO 8601 time, "20150830T123600Z".
std::string string_to_sign(const std::string& amz_date, const std::string& region, const std::string& service,
                           const std::string& canonical_request);

// The signature of `string_to_sign`, lower-case hex: HMAC-SHA256 with the key
// derived from "AWS4" + secret, the date, region, service and "aws4_request".
std::string signature(const std::string& secret_access_key, const std::string& amz_date,
                      const std::string& region, const std::string& service,
                      const std::string& string_to_sign);

// The full Authorization header value:
// "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request,
// SignedHeaders=host;x-amz-date, Signature=...". The request's headers must
// already hold x-amz-date (and x-amz-security-token with a session token):
// this function signs what it is given and adds nothing.
std::string authorization(const SigningRequest& request, const Credentials& credentials,
                          const std::string& region, const std::string& service, const std::string& amz_date);

// Lower-case hex SHA-256 of `data`.
std::string sha256_hex(std::span<const std::byte> data);
std::string sha256_hex(std::string_view text);

// HMAC-SHA256 of `data` with `key`, raw 32 bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

// Lower-case hex of raw bytes.
std::string hex(std::string_view bytes);

// Incremental SHA-256, for bodies streamed from a ByteSource.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::span<const std::byte> data);
  // Lower-case hex; the object is spent afterwards.
  std::string finish_hex();

 private:
  struct State;
  State* m_state;
};

// Base64 (RFC 4648, with padding) of the raw MD5 of `data`: the Content-MD5
// header value that DeleteObjects requires.
std::string content_md5(std::string_view data);

}  // namespace walship::s3
