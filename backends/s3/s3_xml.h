// The XML S3 speaks, pure: parsing the answers walship reads (ListObjectsV2
// pages, errors, multipart and batch-delete results) with pugixml, and
// building the request bodies it sends. Element names are matched without
// their namespace, as stores differ in the xmlns they write.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace walship::s3 {

struct ListPage {
  struct Entry {
    std::string key;
    uint64_t size = 0;
  };
  std::vector<Entry> entries;
  bool truncated = false;
  std::string next_continuation_token;
};

// A ListBucketResult (ListObjectsV2). Throws Failure on a body that is not one.
ListPage parse_list_page(const std::string& xml);

struct ErrorInfo {
  std::string code;     // "NoSuchBucket"; empty when the body is not an S3 error
  std::string message;  // "The specified bucket does not exist"
  std::string region;   // <Region>, sent with AuthorizationHeaderMalformed
};

// An <Error> document; nullopt when `xml` is not one (an empty body, HTML
// from a proxy). Never throws.
std::optional<ErrorInfo> parse_error(const std::string& xml);

// The <Credentials> of an STS AssumeRoleWithWebIdentityResponse, as text
// (Expiration as STS writes it, RFC 3339). Throws Failure when absent.
struct StsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
  std::string expiration;
};
StsCredentials parse_sts_credentials(const std::string& xml);

// An STS <ErrorResponse><Error>; nullopt when `xml` is not one. Never throws.
std::optional<ErrorInfo> parse_sts_error(const std::string& xml);

// The UploadId of an InitiateMultipartUploadResult. Throws Failure when absent.
std::string parse_upload_id(const std::string& xml);

struct DeleteFailure {
  std::string key;
  std::string code;
  std::string message;
};
// The <Error> entries of a DeleteResult. Throws Failure on a body that is not one.
std::vector<DeleteFailure> parse_delete_result(const std::string& xml);

// <Delete><Quiet>true</Quiet><Object><Key>..</Key></Object>...</Delete>
std::string delete_request_body(const std::vector<std::string>& keys);

// <CompleteMultipartUpload> with each (part number, ETag).
std::string complete_multipart_body(const std::vector<std::pair<int, std::string>>& parts);

}  // namespace walship::s3
