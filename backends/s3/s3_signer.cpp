#include "backends/s3/s3_signer.h"

#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <map>

#include "lib/util/error.h"
#include "lib/util/percent_encode.h"

namespace walship::s3 {

namespace {

constexpr char k_hex_lower[] = "0123456789abcdef";

const mbedtls_md_info_t* md_info(mbedtls_md_type_t type) {
  const mbedtls_md_info_t* info = mbedtls_md_info_from_type(type);
  if (info == nullptr) throw Failure("unable to sign an S3 request: mbedTLS lacks a hash it needs");
  return info;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Trims the value and collapses each inner run of whitespace to one space.
std::string canonical_header_value(std::string_view value) {
  std::string out;
  bool pending_space = false;
  for (char c : value) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
  }
  return out;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Lower-cased names in sorted order, each with its values joined by ','.
std::map<std::string, std::string> canonical_headers(const SigningRequest& request) {
  std::map<std::string, std::string> headers;
  for (const auto& [name, value] : request.headers) {
    const std::string key = lower(canonical_header_value(name));
    auto [it, inserted] = headers.try_emplace(key, canonical_header_value(value));
    if (!inserted) it->second += "," + canonical_header_value(value);
  }
  return headers;
}

std::string date_of(const std::string& amz_date) { return amz_date.substr(0, 8); }

}  // namespace

std::string uri_encode(std::string_view text, bool encode_slash) {
  return percent_encode(text, encode_slash ? "" : "/");
}

std::string hex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += k_hex_lower[c >> 4];
    out += k_hex_lower[c & 0x0f];
  }
  return out;
}

std::string sha256_hex(std::span<const std::byte> data) {
  std::array<unsigned char, 32> digest{};
  if (mbedtls_md(md_info(MBEDTLS_MD_SHA256), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                 digest.data()) != 0) {
    throw Failure("unable to hash an S3 request body: SHA-256 failed");
  }
  return hex(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::string sha256_hex(std::string_view text) {
  return sha256_hex(std::as_bytes(std::span<const char>(text.data(), text.size())));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, 32> mac{};
  if (mbedtls_md_hmac(md_info(MBEDTLS_MD_SHA256), reinterpret_cast<const unsigned char*>(key.data()),
                      key.size(), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                      mac.data()) != 0) {
    throw Failure("unable to sign an S3 request: HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<const char*>(mac.data()), mac.size());
}

struct Sha256::State {
  mbedtls_md_context_t ctx;
};

Sha256::Sha256() : m_state(new State) {
  mbedtls_md_init(&m_state->ctx);
  if (mbedtls_md_setup(&m_state->ctx, md_info(MBEDTLS_MD_SHA256), 0) != 0 ||
      mbedtls_md_starts(&m_state->ctx) != 0) {
    mbedtls_md_free(&m_state->ctx);
    delete m_state;
    throw Failure("unable to hash an S3 request body: SHA-256 setup failed");
  }
}

Sha256::~Sha256() {
  mbedtls_md_free(&m_state->ctx);
  delete m_state;
}

void Sha256::update(std::span<const std::byte> data) {
  if (mbedtls_md_update(&m_state->ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) !=
      0) {
    throw Failure("unable to hash an S3 request body: SHA-256 failed");
  }
}

std::string Sha256::finish_hex() {
  std::array<unsigned char, 32> digest{};
  if (mbedtls_md_finish(&m_state->ctx, digest.data()) != 0) {
    throw Failure("unable to hash an S3 request body: SHA-256 failed");
  }
  return hex(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::string content_md5(std::string_view data) {
  std::array<unsigned char, 16> digest{};
  if (mbedtls_md(md_info(MBEDTLS_MD_MD5), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                 digest.data()) != 0) {
    throw Failure("unable to hash an S3 request body: MD5 failed");
  }
  std::array<unsigned char, 32> encoded{};
  size_t length = 0;
  if (mbedtls_base64_encode(encoded.data(), encoded.size(), &length, digest.data(), digest.size()) != 0) {
    throw Failure("unable to hash an S3 request body: base64 failed");
  }
  return std::string(reinterpret_cast<const char*>(encoded.data()), length);
}

std::string signed_headers(const SigningRequest& request) {
  std::string out;
  for (const auto& [name, value] : canonical_headers(request)) {
    if (!out.empty()) out += ';';
    out += name;
  }
  return out;
}

std::string canonical_request(const SigningRequest& request) {
  std::vector<std::pair<std::string, std::string>> query;
  query.reserve(request.query.size());
  for (const auto& [name, value] : request.query)
    query.emplace_back(uri_encode(name, true), uri_encode(value, true));
  std::sort(query.begin(), query.end());

  std::string out =
      request.method + "\n" + (request.canonical_uri.empty() ? "/" : request.canonical_uri) + "\n";
  for (size_t i = 0; i < query.size(); ++i) {
    if (i > 0) out += '&';
    out += query[i].first + "=" + query[i].second;
  }
  out += '\n';
  const auto headers = canonical_headers(request);
  for (const auto& [name, value] : headers) out += name + ":" + value + "\n";
  out += '\n';
  out += signed_headers(request) + "\n";
  out += request.payload_hash;
  return out;
}

std::string string_to_sign(const std::string& amz_date, const std::string& region, const std::string& service,
                           const std::string& canonical_request) {
  return "AWS4-HMAC-SHA256\n" + amz_date + "\n" + date_of(amz_date) + "/" + region + "/" + service +
         "/aws4_request\n" + sha256_hex(canonical_request);
}

std::string signature(const std::string& secret_access_key, const std::string& amz_date,
                      const std::string& region, const std::string& service,
                      const std::string& string_to_sign) {
  const std::string date_key = hmac_sha256("AWS4" + secret_access_key, date_of(amz_date));
  const std::string region_key = hmac_sha256(date_key, region);
  const std::string service_key = hmac_sha256(region_key, service);
  const std::string signing_key = hmac_sha256(service_key, "aws4_request");
  return hex(hmac_sha256(signing_key, string_to_sign));
}

std::string authorization(const SigningRequest& request, const Credentials& credentials,
                          const std::string& region, const std::string& service,
                          const std::string& amz_date) {
  const std::string to_sign = string_to_sign(amz_date, region, service, canonical_request(request));
  return "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + "/" + date_of(amz_date) + "/" + region +
         "/" + service + "/aws4_request, SignedHeaders=" + signed_headers(request) +
         ", Signature=" + signature(credentials.secret_access_key, amz_date, region, service, to_sign);
}

}  // namespace walship::s3
