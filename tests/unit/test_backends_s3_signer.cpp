// The S3 backend's SigV4 signer against published vectors: AWS's SigV4 test
// suite (the cases that apply to S3, which never normalizes a path) and the
// worked examples of the S3 API Reference, both in tests/data/sigv4 (its
// README says where each comes from). Every stage is checked on its own
// (canonical request, string to sign, signature, Authorization header), so a
// failure says which one is wrong. The cross-check against an independent
// implementation (botocore) on random requests is
// tests/integration/test_s3_signer_botocore.py.
#include <doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "backends/s3/s3_signer.h"
#include "backends/url.h"

using namespace walship::s3;

namespace {

const std::string k_vectors = std::string(WALSHIP_SOURCE_DIR) + "/tests/data/sigv4";
const std::string k_empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "unable to read " << path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string sha256_of(const std::string& text) {
  return sha256_hex(std::as_bytes(std::span(text.data(), text.size())));
}

// One published case: the request as the signer's caller would describe it,
// and the expected outputs.
struct Vector {
  std::string name;
  SigningRequest request;
  Credentials credentials;
  std::string region;
  std::string service;
  std::string amz_date;
  std::string creq;
  std::string sts;
  std::string authz;
};

// Parses NAME.req ("METHOD TARGET HTTP/1.1", "Name:value" lines, a blank line,
// the body). TARGET may hold spaces (get-space), so it runs from the first
// space to the last. The raw path is encoded as walship encodes an object key;
// the query is passed decoded; header values raw, for the signer to trim.
Vector load_vector(const std::string& name) {
  Vector v;
  v.name = name;
  const std::string base = k_vectors + "/" + name;
  const std::string req = read_text(base + ".req");
  v.creq = read_text(base + ".creq");
  v.sts = read_text(base + ".sts");
  v.authz = read_text(base + ".authz");

  const size_t blank = req.find("\n\n");
  const std::string head = req.substr(0, blank);
  const std::string body = blank == std::string::npos ? "" : req.substr(blank + 2);
  std::istringstream lines(head);
  std::string line;
  std::getline(lines, line);
  const size_t first_space = line.find(' ');
  const size_t last_space = line.rfind(' ');
  REQUIRE_MESSAGE(first_space < last_space, name << ".req: bad request line: " << line);
  v.request.method = line.substr(0, first_space);
  const std::string target = line.substr(first_space + 1, last_space - first_space - 1);
  const size_t question = target.find('?');
  v.request.canonical_uri = uri_encode(target.substr(0, question), false);
  if (question != std::string::npos) {
    std::string query = target.substr(question + 1);
    size_t start = 0;
    while (start <= query.size()) {
      size_t end = query.find('&', start);
      if (end == std::string::npos) end = query.size();
      const std::string pair = query.substr(start, end - start);
      const size_t equals = pair.find('=');
      v.request.query.emplace_back(
          walship::percent_decode_lenient(pair.substr(0, equals)),
          equals == std::string::npos ? "" : walship::percent_decode_lenient(pair.substr(equals + 1)));
      start = end + 1;
    }
  }
  while (std::getline(lines, line)) {
    const size_t colon = line.find(':');
    REQUIRE_MESSAGE(colon != std::string::npos, name << ".req: bad header line: " << line);
    std::string header = line.substr(0, colon);
    std::string value = line.substr(colon + 1);
    std::string lower = header;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (lower == "x-amz-date") v.amz_date = value;
    v.request.headers.emplace_back(std::move(header), std::move(value));
  }
  REQUIRE_MESSAGE(!v.amz_date.empty(), name << ".req has no X-Amz-Date header");
  v.request.payload_hash = sha256_of(body);

  v.region = "us-east-1";
  if (name.starts_with("s3-")) {
    v.credentials = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
    v.service = "s3";
  } else {
    // post-sts-header-before signs the token as one of the request's
    // headers; post-sts-header-after sends it unsigned. Neither needs it here.
    v.credentials = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
    v.service = "service";
  }
  return v;
}

// The names of the cases in tests/data/sigv4 (every NAME.req), sorted.
std::vector<std::string> vector_names() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(k_vectors)) {
    if (entry.path().extension() == ".req") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

void check_vector(const Vector& v) {
  CAPTURE(v.name);
  const std::string creq = canonical_request(v.request);
  CHECK(creq == v.creq);
  const std::string sts = string_to_sign(v.amz_date, v.region, v.service, creq);
  CHECK(sts == v.sts);
  const std::string expected_signature = v.authz.substr(v.authz.rfind('=') + 1);
  CHECK(signature(v.credentials.secret_access_key, v.amz_date, v.region, v.service, v.sts) ==
        expected_signature);
  CHECK(authorization(v.request, v.credentials, v.region, v.service, v.amz_date) == v.authz);
}

}  // namespace

TEST_CASE("every kept case of AWS's SigV4 test suite signs exactly as published") {
  int cases = 0;
  for (const std::string& name : vector_names()) {
    if (name.starts_with("s3-")) continue;
    check_vector(load_vector(name));
    ++cases;
  }
  CHECK(cases == 22);  // tests/data/sigv4/README.md lists them
}

TEST_CASE("the S3 API Reference's worked examples sign exactly as published") {
  // GET Object with a range, PUT Object with a body and '$' in the key,
  // GET Bucket lifecycle (a query name without a value), list objects.
  int cases = 0;
  for (const std::string& name : vector_names()) {
    if (!name.starts_with("s3-")) continue;
    check_vector(load_vector(name));
    ++cases;
  }
  CHECK(cases == 4);
}

TEST_CASE("the PUT Object example's payload hash is the SHA-256 of its body") {
  CHECK(sha256_of("Welcome to Amazon S3.") ==
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  CHECK(sha256_of("") == k_empty_sha256);
  CHECK(sha256_of("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("uri_encode leaves only the unreserved characters as they are") {
  const std::string unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
  CHECK(uri_encode(unreserved, true) == unreserved);
  CHECK(uri_encode(unreserved, false) == unreserved);
  CHECK(uri_encode("", true).empty());
  // A space is %20, never '+'; '+' itself is encoded (S3 would read a raw '+'
  // in a query as a space).
  CHECK(uri_encode("a b", true) == "a%20b");
  CHECK(uri_encode("a+b", true) == "a%2Bb");
  CHECK(uri_encode("a  b", false) == "a%20%20b");
  CHECK(uri_encode("k=v&x", true) == "k%3Dv%26x");
  CHECK(uri_encode("100%", true) == "100%25");
  CHECK(uri_encode("%20", true) == "%2520");  // already-encoded text is encoded again
  CHECK(uri_encode("$*!'()", true) == "%24%2A%21%27%28%29");
  CHECK(uri_encode(":@,;?#[]", true) == "%3A%40%2C%3B%3F%23%5B%5D");
}

TEST_CASE("uri_encode keeps '/' only when told to, for object keys") {
  CHECK(uri_encode("/bucket/a/b", false) == "/bucket/a/b");
  CHECK(uri_encode("/bucket/a/b", true) == "%2Fbucket%2Fa%2Fb");
  CHECK(uri_encode("a//b/./c/../d", false) == "a//b/./c/../d");  // no normalization
}

TEST_CASE("uri_encode writes each UTF-8 byte as upper-case hex") {
  CHECK(uri_encode("\xc3\xa9", true) == "%C3%A9");                  // é
  CHECK(uri_encode("\xe1\x88\xb4", true) == "%E1%88%B4");           // U+1234
  CHECK(uri_encode("\xf0\x9f\x90\x98", true) == "%F0%9F%90%98");    // 🐘
  CHECK(uri_encode(std::string("\xff\x80", 2), true) == "%FF%80");  // not UTF-8: still byte by byte
  CHECK(uri_encode(std::string("a\0b", 3), true) == "a%00b");
  CHECK(uri_encode("\x7f\x1f", true) == "%7F%1F");
}

TEST_CASE("the canonical URI is the path as sent: no normalization, no second encoding") {
  SigningRequest request{"GET", "/bucket//a/./b/../c%20d", {}, {{"Host", "h"}}, "UNSIGNED-PAYLOAD"};
  CHECK(canonical_request(request) == "GET\n/bucket//a/./b/../c%20d\n\nhost:h\n\nhost\nUNSIGNED-PAYLOAD");
}

TEST_CASE("query parameters are encoded, then sorted by encoded name, then by value") {
  SigningRequest request{"GET", "/b", {}, {{"host", "h"}}, k_empty_sha256};
  // Given decoded, in any order. '{' (0x7B) sorts after 'z' decoded but
  // before it encoded (%7B); so does é (%C3%A9); S3 sorts after encoding.
  request.query = {{"z", "1"},         {"{", "2"}, {"\xc3\xa9", "3"}, {"prefix", "a/b c+d"},
                   {"list-type", "2"}, {"a", "y"}, {"a", "x"},        {"delete", ""},
                   {"B", "~"}};
  CHECK(canonical_request(request) ==
        "GET\n/b\n%7B=2&%C3%A9=3&B=~&a=x&a=y&delete=&list-type=2&prefix=a%2Fb%20c%2Bd&z=1\n"
        "host:h\n\nhost\n" +
            k_empty_sha256);
}

TEST_CASE("a query name without a value signs as 'name='") {
  SigningRequest request{"GET", "/", {{"lifecycle", ""}}, {{"host", "h"}}, k_empty_sha256};
  CHECK(canonical_request(request) == "GET\n/\nlifecycle=\nhost:h\n\nhost\n" + k_empty_sha256);
}

TEST_CASE("header names are lower-cased and sorted; values trimmed, inner runs of spaces made one") {
  SigningRequest request{"PUT",
                         "/b/k",
                         {},
                         {{"X-Amz-Meta-B", "  two   words  "},
                          {"Host", "127.0.0.1:9000"},
                          {"x-amz-meta-a", "v"},
                          {"Content-Type", "application/octet-stream"},
                          {"X-AMZ-DATE", "20261201T120000Z"}},
                         "UNSIGNED-PAYLOAD"};
  CHECK(
      canonical_request(request) ==
      "PUT\n/b/k\n\ncontent-type:application/octet-stream\nhost:127.0.0.1:9000\nx-amz-date:20261201T120000Z\n"
      "x-amz-meta-a:v\nx-amz-meta-b:two words\n\ncontent-type;host;x-amz-date;x-amz-meta-a;x-amz-meta-b\n"
      "UNSIGNED-PAYLOAD");
}

TEST_CASE("a header given twice signs once, its values joined by commas in the order given") {
  SigningRequest request{
      "GET", "/", {}, {{"My-Header", "b"}, {"host", "h"}, {"my-header", " a "}}, k_empty_sha256};
  CHECK(canonical_request(request) == "GET\n/\n\nhost:h\nmy-header:b,a\n\nhost;my-header\n" + k_empty_sha256);
}

TEST_CASE("a session token is signed as x-amz-security-token and the header names the key's scope") {
  const Credentials credentials{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                "token/with+chars=="};
  SigningRequest request{"GET",
                         "/",
                         {},
                         {{"Host", "example.amazonaws.com"},
                          {"X-Amz-Date", "20150830T123600Z"},
                          {"X-Amz-Security-Token", credentials.session_token}},
                         k_empty_sha256};
  const std::string header = authorization(request, credentials, "us-east-1", "service", "20150830T123600Z");
  CHECK(
      header.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                         "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="));
  CHECK(header.size() == header.rfind('=') + 1 + 64);
  CHECK(canonical_request(request).find("\nx-amz-security-token:token/with+chars==\n") != std::string::npos);
}

TEST_CASE("signed_headers lists each header once, lower-cased and sorted") {
  SigningRequest request{"GET",
                         "/",
                         {},
                         {{"X-Amz-Date", "d"}, {"Host", "h"}, {"x-amz-date", "d"}, {"Range", "r"}},
                         k_empty_sha256};
  CHECK(signed_headers(request) == "host;range;x-amz-date");
}

TEST_CASE("the hashes match their published test vectors") {
  // RFC 4231 test case 2; FIPS 180-2's "one million 'a'"; RFC 1321's MD5 of
  // "" and "abc", base64 as Content-MD5 carries them.
  CHECK(hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const std::string million(1000000, 'a');
  CHECK(sha256_hex(std::string_view(million)) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  Sha256 streamed;
  for (size_t at = 0; at < million.size(); at += 65521) {
    const std::string_view piece = std::string_view(million).substr(at, 65521);
    streamed.update(std::as_bytes(std::span(piece.data(), piece.size())));
  }
  CHECK(streamed.finish_hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK(content_md5("") == "1B2M2Y8AsgTpgAmY7PhCfg==");
  CHECK(content_md5("abc") == "kAFQmDzST7DWlj99KOF/cg==");
}
