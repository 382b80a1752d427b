// The s3:// backend's pure parts. The signer's vector tests (AWS's SigV4
// suite, botocore) are in test_backends_s3_signer.cpp; this file holds a smoke
// test of the signer against the S3 documentation's worked example, and the
// URL options, credentials, XML and error classification. The backend's
// behaviour against a server is in the conformance suite (s3_fixture.h) and
// tests/integration/test_s3.py.
#include <doctest.h>

#include <string>

#include "backends/s3/s3_signer.h"

using namespace walship;
using namespace walship::s3;

TEST_CASE("s3 signer: the S3 documentation's GET example signs as published") {
  // "Example: GET Object" of the S3 API reference, "Signature Calculations for
  // the Authorization Header: Transferring Payload in a Single Chunk".
  SigningRequest request;
  request.method = "GET";
  request.canonical_uri = "/test.txt";
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                     {"Range", "bytes=0-9"},
                     {"x-amz-content-sha256", std::string(k_empty_payload_hash)},
                     {"x-amz-date", "20130524T000000Z"}};
  request.payload_hash = std::string(k_empty_payload_hash);
  const std::string creq = canonical_request(request);
  CHECK(creq ==
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(string_to_sign("20130524T000000Z", "us-east-1", "s3", creq) ==
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  const Credentials credentials{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  CHECK(authorization(request, credentials, "us-east-1", "s3", "20130524T000000Z") ==
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_CASE("s3 signer: query pairs are encoded, slashes too, and sorted by encoded name then value") {
  SigningRequest request;
  request.method = "GET";
  request.canonical_uri = "/bucket";
  request.query = {
      {"prefix", "a b/c"}, {"list-type", "2"}, {"continuation-token", "x+y="}, {"b", "2"}, {"b", "1"}};
  request.headers = {{"Host", "h"}};
  request.payload_hash = "UNSIGNED-PAYLOAD";
  CHECK(canonical_request(request) ==
        "GET\n/bucket\nb=1&b=2&continuation-token=x%2By%3D&list-type=2&prefix=a%20b%2Fc\nhost:h\n\nhost\n"
        "UNSIGNED-PAYLOAD");
}

TEST_CASE("s3 signer: header values are trimmed, inner runs collapsed, same names joined in order") {
  SigningRequest request;
  request.method = "PUT";
  request.canonical_uri = "";
  request.headers = {{"My-Header", "  a   b\t c "}, {"host", "h"}, {"my-header", "z"}};
  request.payload_hash = "x";
  CHECK(canonical_request(request) == "PUT\n/\n\nhost:h\nmy-header:a b c,z\n\nhost;my-header\nx");
}

TEST_CASE("s3 signer: uri_encode keeps unreserved bytes and '/' unless asked, hex in upper case") {
  CHECK(uri_encode("aZ09-._~/ é*", false) == "aZ09-._~/%20%C3%A9%2A");
  CHECK(uri_encode("a/b", true) == "a%2Fb");
}

TEST_CASE("s3 signer: SHA-256, streamed or whole, and Content-MD5") {
  CHECK(sha256_hex(std::string_view()) == k_empty_payload_hash);
  Sha256 hash;
  hash.update(std::as_bytes(std::span<const char>("ab", 2)));
  hash.update(std::as_bytes(std::span<const char>("c", 1)));
  CHECK(hash.finish_hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex(std::string_view("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(content_md5("") == "1B2M2Y8AsgTpgAmY7PhCfg==");
}
