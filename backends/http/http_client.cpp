#include "backends/http/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <exception>
#include <span>
#include <utility>

#include "backends/tls_trust.h"
#include "lib/util/error.h"

namespace walship::http {

namespace {

std::once_flag g_curl_init;

// The state the libcurl callbacks share with perform(). Exceptions from the
// source or the sink are caught here and rethrown once libcurl has returned:
// none may cross libcurl's C frames.
struct Transfer {
  CURL* curl = nullptr;
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  uint64_t sent = 0;
  std::exception_ptr failure;
};

size_t read_body(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  try {
    if (t->request->body == nullptr) return 0;
    const uint64_t left = t->request->body_size - t->sent;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left, uint64_t{size} * count));
    if (want == 0) return 0;
    const size_t got = t->request->body->read(std::as_writable_bytes(std::span<char>(buffer, want)));
    if (got == 0) {
      throw Failure("unable to send the body of '" + t->request->url.substr(0, t->request->url.find('?')) +
                    "': the source ended after " + std::to_string(t->sent) + " bytes, expected " +
                    std::to_string(t->request->body_size));
    }
    t->sent += got;
    return got;
  } catch (...) {
    t->failure = std::current_exception();
    return CURL_READFUNC_ABORT;
  }
}

size_t write_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  try {
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    if (t->request->sink != nullptr && status >= 200 && status < 300) {
      t->request->sink->write(std::as_bytes(std::span<const char>(data, n)));
      t->response->sink_bytes += n;
    } else {
      const size_t room = t->request->max_body - std::min(t->request->max_body, t->response->body.size());
      t->response->body.append(data, std::min(n, room));
      if (n > room) t->response->body_truncated = true;
    }
    return n;
  } catch (...) {
    t->failure = std::current_exception();
    return 0;
  }
}

size_t read_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  std::string line(data, n);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.starts_with("HTTP/")) {
    t->response->headers.clear();  // a new response (after 100 Continue)
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return n;
  std::string name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  size_t start = colon + 1;
  while (start < line.size() && line[start] == ' ') ++start;
  t->response->headers[name] = line.substr(start);
  return n;
}

// Refused connections, resets, timeouts and DNS hiccups may clear up; a
// malformed URL, an unsupported protocol or a TLS certificate problem will not.
bool is_transient(CURLcode code) {
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_OUT_OF_MEMORY: return false;
    default: return true;
  }
}

// libcurl calls this about once a second, and on every chunk: a non-zero
// answer abandons the transfer (CURLE_ABORTED_BY_CALLBACK).
int check_cancel(void* data, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* cancel = static_cast<const std::atomic<bool>*>(data);
  return cancel->load() ? 1 : 0;
}

}  // namespace

void HttpClient::CurlDeleter::operator()(CURL* curl) const { curl_easy_cleanup(curl); }

HttpClient::HttpClient(TlsOptions tls) : m_tls(std::move(tls)) {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpClient::~HttpClient() = default;

HttpClient::CurlPtr HttpClient::take() {
  {
    std::lock_guard lock(m_mutex);
    if (!m_idle.empty()) {
      CurlPtr curl = std::move(m_idle.back());
      m_idle.pop_back();
      curl_easy_reset(curl.get());
      return curl;
    }
  }
  CurlPtr curl(curl_easy_init());
  if (!curl) throw Failure("unable to start an HTTP client: curl_easy_init failed");
  return curl;
}

void HttpClient::give_back(CurlPtr curl) {
  std::lock_guard lock(m_mutex);
  m_idle.push_back(std::move(curl));
}

HttpResponse HttpClient::perform(const HttpRequest& request, TransportError& error) {
  CurlPtr curl = take();
  HttpResponse response;
  Transfer transfer{curl.get(), &request, &response, 0, nullptr};
  CURL* c = curl.get();

  struct SlistDeleter {
    void operator()(curl_slist* list) const { curl_slist_free_all(list); }
  };
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto add_header = [&](const std::string& header) {
    curl_slist* grown = curl_slist_append(headers.get(), header.c_str());
    if (grown == nullptr) throw Failure("unable to build an HTTP request: out of memory");
    (void)headers.release();
    headers.reset(grown);
  };
  for (const std::string& h : request.headers) add_header(h);
  add_header("Expect:");  // no 100-continue round trip

  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, request.connect_timeout_seconds);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, request.timeout_seconds);
  // A connection that moves less than 1 byte/s for a minute is dead.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  apply_ca_bundle(c);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, read_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
  if (!m_tls.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, m_tls.ca_file.c_str());
  if (m_tls.insecure_skip_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method == "POST" || request.method == "PUT") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(request.body != nullptr ? request.body_size : 0));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
    curl_easy_setopt(c, CURLOPT_READDATA, &transfer);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (request.cancel != nullptr) {
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, check_cancel);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(request.cancel));
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  }

  const CURLcode code = curl_easy_perform(c);
  if (transfer.failure) std::rethrow_exception(transfer.failure);
  if (code != CURLE_OK) {
    error.message = curl_easy_strerror(code);
    error.transient = is_transient(code);
    response.status = 0;
    return response;  // the handle may hold a broken connection: not pooled
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  give_back(std::move(curl));
  return response;
}

}  // namespace walship::http
