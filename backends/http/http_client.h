// The small libcurl client the HTTP backends share (gs://, s3://): one request
// at a time per handle, handles pooled so connections (and TLS sessions) are
// reused across requests and threads. Only what the backends need: no
// redirects, no cookies, no proxies beyond what libcurl takes from the
// environment.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lib/util/byte_stream.h"

typedef void CURL;

namespace walship::http {

// How the server's certificate is checked: against the system's CA bundle by
// default, or `ca_file`; `insecure_skip_verify` turns checking off (the
// backend warns about it).
struct TlsOptions {
  std::string ca_file;
  bool insecure_skip_verify = false;
};

struct HttpRequest {
  std::string method = "GET";  // "HEAD" asks for no body
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  // The body, sent with Content-Length: body_size; nullptr sends no body
  // (Content-Length: 0 for POST and PUT). Read from its current position.
  ByteSource* body = nullptr;
  uint64_t body_size = 0;
  // Where a 2xx response body goes; nullptr keeps it in HttpResponse::body.
  ByteSink* sink = nullptr;
  // How much of a body kept in HttpResponse::body is kept: error bodies
  // (JSON from GCS, XML from S3) are small, and a misbehaving server must not
  // make us buffer a whole object. Listing pages may ask for more.
  size_t max_body = size_t{1} << 20;
  // Whole-request limit in seconds (0: none; a stall is caught by the
  // low-speed limit instead) and the connect limit.
  long timeout_seconds = 0;
  long connect_timeout_seconds = 10;
  // When set, the request is abandoned (a transport error, not transient)
  // soon after it turns true: a long poll that must not hold up a stop.
  const std::atomic<bool>* cancel = nullptr;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // error bodies and JSON, capped
  uint64_t sink_bytes = 0;                     // bytes given to HttpRequest::sink
  bool body_truncated = false;                 // `body` was cut at HttpRequest::max_body
};

// Whether short-lived credentials (S3 role keys, a GCS access token) fetched
// at `fetched_ms` that expire at `expires_ms` (0: never) are due for renewal
// at `now_ms` (all in ms since the epoch): five minutes before they expire,
// or half-way for those that live less than ten. The one rule of both
// backends. Pure.
inline bool renewal_due(uint64_t fetched_ms, uint64_t expires_ms, uint64_t now_ms) {
  if (expires_ms == 0) return false;
  constexpr int64_t k_margin_ms = 5 * 60 * 1000;
  const int64_t lifetime = expires_ms > fetched_ms ? static_cast<int64_t>(expires_ms - fetched_ms) : 0;
  const int64_t left = static_cast<int64_t>(expires_ms) - static_cast<int64_t>(now_ms);
  return left <= std::min<int64_t>(k_margin_ms, lifetime / 2);
}

// A libcurl failure before any HTTP status arrived (refused, reset, timed out,
// DNS). `transient` says whether trying again may help.
struct TransportError {
  std::string message;
  bool transient = true;
};

class HttpClient {
 public:
  explicit HttpClient(TlsOptions tls = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs the request on a pooled handle. Returns the response, or throws
  // what the body source or the sink threw; a transport failure is returned
  // through `error` (and the response status is 0).
  HttpResponse perform(const HttpRequest& request, TransportError& error);

 private:
  struct CurlDeleter {
    void operator()(CURL* curl) const;
  };
  using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;
  CurlPtr take();
  void give_back(CurlPtr curl);

  TlsOptions m_tls;
  std::mutex m_mutex;
  std::vector<CurlPtr> m_idle;
};

}  // namespace walship::http
