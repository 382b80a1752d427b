#include "backends/cloud/metadata_watcher.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "backends/cloud/imds_session.h"
#include "backends/http/http_client.h"
#include "lib/util/error.h"
#include "lib/util/log.h"
#include "lib/util/percent_encode.h"
#include "lib/util/time.h"

namespace walship::cloud {

namespace {

// The metadata services are on the machine's link: a connection that does
// not open at once will not.
constexpr long k_connect_seconds = 1;
constexpr long k_timeout_seconds = 5;
// Azure enables Scheduled Events on the first request, which may take up to
// two minutes to answer (its documentation says so).
constexpr long k_azure_first_timeout_seconds = 120;
// GCE holds a wait_for_change request up to this long, then answers the
// unchanged value.
constexpr int k_gce_wait_seconds = 30;
constexpr int64_t k_aws_interval_ms = 5000;  // AWS: "check every 5 seconds"
constexpr int64_t k_azure_interval_ms = 1000;
constexpr int64_t k_max_retry_ms = 30'000;

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// Milliseconds between two polls of `cloud` (0: GCE's long poll needs none).
// $WALSHIP_TEST_NOTICE_POLL_MS replaces AWS's and Azure's: scripts/spot-sim
// serves notices seconds, not minutes, ahead, which a 5 s poll would miss.
int64_t poll_interval_ms(Cloud cloud) {
  if (cloud == Cloud::gce) return 0;
  const int64_t given = std::atoll(env_or_empty("WALSHIP_TEST_NOTICE_POLL_MS").c_str());
  if (given > 0) return given;
  return cloud == Cloud::aws ? k_aws_interval_ms : k_azure_interval_ms;
}

bool aws_disabled() {
  std::string value = env_or_empty("AWS_EC2_METADATA_DISABLED");
  std::transform(value.begin(), value.end(), value.begin(), [](unsigned char c) { return std::tolower(c); });
  return value == "true";
}

std::string gce_endpoint() {
  std::string host = env_or_empty("GCE_METADATA_HOST");
  if (host.empty()) host = "metadata.google.internal";
  return host.starts_with("http://") ? host : "http://" + host;
}

std::string azure_endpoint() {
  std::string url = env_or_empty("WALSHIP_AZURE_METADATA_ENDPOINT");
  if (url.empty()) url = "http://169.254.169.254";
  while (url.ends_with('/')) url.pop_back();
  return url;
}

std::string first_line_of(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string status_text(const http::HttpResponse& response, const http::TransportError& error) {
  return response.status == 0 ? error.message : "HTTP " + std::to_string(response.status);
}

class MetadataWatcher final : public NoticeWatcher {
 public:
  MetadataWatcher(Cloud cloud, std::string endpoint, bool detected, NoticeCallback notify)
      : m_cloud(cloud),
        m_endpoint(std::move(endpoint)),
        m_detected(detected),
        m_interval_ms(poll_interval_ms(cloud)),
        m_notify(std::move(notify)),
        m_imds(m_http, m_endpoint, k_connect_seconds, k_timeout_seconds) {
    log(LogLevel::info, "watching for preemption notices",
        {{"cloud", cloud_name(m_cloud)}, {"endpoint", m_endpoint}, {"detected", m_detected}});
    m_thread = std::thread([this] { run(); });
  }

  ~MetadataWatcher() override {
    stop();
    m_thread.join();
  }

  void stop() override {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_cancel = true;
    m_cv.notify_all();
  }

 private:
  // One round of requests. Returns false when nothing answered (no
  // connection); a refusal or an unreadable document is put in `error`.
  bool poll(std::string& error) {
    switch (m_cloud) {
      case Cloud::aws: return poll_aws(error);
      case Cloud::gce: return poll_gce(error);
      case Cloud::azure: return poll_azure(error);
    }
    return false;
  }

  bool poll_aws(std::string& error) {
    struct Item {
      const char* path;
      PreemptionNotice (*parse)(std::string_view);
    };
    static constexpr Item k_items[] = {
        {"/latest/meta-data/spot/instance-action", parse_aws_instance_action},
        {"/latest/meta-data/events/recommendations/rebalance", parse_aws_rebalance}};
    for (const Item& item : k_items) {
      http::TransportError transport;
      const http::HttpResponse response = m_imds.get(item.path, transport, &m_cancel);
      if (response.status == 0) {
        error = transport.message;
        return false;
      }
      if (m_imds.token_failed()) {
        // IMDSv1 (no token) is never used: a service that gives none is not trusted.
        error = "the EC2 instance metadata service refused an IMDSv2 session (" +
                status_text(response, transport) + ")";
        return true;
      }
      if (response.status == 200) {
        report(item.parse(response.body));
      } else if (response.status != 404) {
        error = std::string(item.path) + ": " + status_text(response, transport);
      }
    }
    return true;
  }

  bool poll_gce(std::string& error) {
    http::HttpRequest request;
    request.url = m_endpoint + "/computeMetadata/v1/instance/preempted";
    if (!m_etag.empty()) {
      request.url += "?wait_for_change=true&last_etag=" + percent_encode(m_etag) +
                     "&timeout_sec=" + std::to_string(k_gce_wait_seconds);
    }
    request.headers = {"Metadata-Flavor: Google"};
    http::TransportError transport;
    const http::HttpResponse response = fetch(
        request, m_etag.empty() ? k_timeout_seconds : k_gce_wait_seconds + k_timeout_seconds, transport);
    if (response.status == 0) {
      error = transport.message;
      return false;
    }
    const auto flavor = response.headers.find("metadata-flavor");
    if (response.status != 200 || flavor == response.headers.end() || flavor->second != "Google") {
      error = "no GCE metadata server answers at " + m_endpoint + " (" + status_text(response, transport) +
              ", Metadata-Flavor " + (flavor == response.headers.end() ? "missing" : flavor->second) + ")";
      m_etag.clear();
      return true;
    }
    const auto etag = response.headers.find("etag");
    m_etag = etag != response.headers.end() ? etag->second : "";
    if (parse_gce_preempted(response.body)) {
      PreemptionNotice notice;
      notice.cloud = Cloud::gce;
      notice.what = "preempted";
      notice.at_ms = now_ms() + k_gce_notice_ms;
      notice.estimated = true;
      report(notice);
    }
    return true;
  }

  bool poll_azure(std::string& error) {
    http::HttpRequest request;
    request.url = m_endpoint + "/metadata/scheduledevents?api-version=2020-07-01";
    request.headers = {"Metadata: true"};
    http::TransportError transport;
    const http::HttpResponse response =
        fetch(request, m_answered ? k_timeout_seconds : k_azure_first_timeout_seconds, transport);
    if (response.status == 0) {
      error = transport.message;
      return false;
    }
    if (response.status != 200) {
      error = "scheduled events: " + status_text(response, transport);
      return true;
    }
    const AzureEvents events = parse_azure_events(response.body);
    if (events.notice) report(*events.notice);
    return true;
  }

  // `request` on the link: a quick connect, `timeout_seconds` in all, given up on stop.
  http::HttpResponse fetch(http::HttpRequest& request, long timeout_seconds,
                           http::TransportError& transport) {
    request.connect_timeout_seconds = k_connect_seconds;
    request.timeout_seconds = timeout_seconds;
    request.cancel = &m_cancel;
    return m_http.perform(request, transport);
  }

  // Each notice once: the services keep answering the same document.
  void report(const PreemptionNotice& notice) {
    // GCE's estimated time moves with each answer: the notice is the same.
    const std::string key =
        notice.what + "@" + (notice.estimated || !notice.at_ms ? "" : std::to_string(*notice.at_ms));
    if (!m_seen.insert(key).second) return;
    m_notify(notice);
  }

  // False once stopping.
  bool wait_ms(int64_t ms) {
    std::unique_lock lock(m_mutex);
    return !m_cv.wait_for(lock, std::chrono::milliseconds(ms), [this] { return m_stop; });
  }

  bool stopping() {
    std::lock_guard lock(m_mutex);
    return m_stop;
  }

  void run() {
    int failures = 0;
    while (!stopping()) {
      std::string error;
      bool answered = false;
      try {
        answered = poll(error);
      } catch (const Failure& e) {
        answered = true;
        error = e.what();
      }
      if (stopping()) return;
      if (!answered && !m_answered && m_detected) {
        log(LogLevel::info, "no metadata service answers: not watching for preemption notices",
            {{"cloud", cloud_name(m_cloud)}, {"endpoint", m_endpoint}, {"error", error}});
        return;
      }
      m_answered = m_answered || answered;
      if (!error.empty()) {
        const int64_t delay = std::min<int64_t>(k_max_retry_ms, int64_t{1000} << std::min(failures, 5));
        if (failures++ == 0) {
          log(LogLevel::warn, "unable to read preemption notices; retrying",
              {{"cloud", cloud_name(m_cloud)}, {"endpoint", m_endpoint}, {"error", error}});
        }
        if (!wait_ms(delay)) return;
        continue;
      }
      if (failures > 0)
        log(LogLevel::info, "reading preemption notices again", {{"cloud", cloud_name(m_cloud)}});
      failures = 0;
      if (m_interval_ms > 0 && !wait_ms(m_interval_ms)) return;
    }
  }

  const Cloud m_cloud;
  const std::string m_endpoint;
  const bool m_detected;  // auto: end quietly if nothing answers at first
  const int64_t m_interval_ms;
  NoticeCallback m_notify;
  http::HttpClient m_http;
  ImdsSession m_imds;
  std::string m_etag;  // GCE: the value's ETag, for wait_for_change
  bool m_answered = false;
  std::set<std::string> m_seen;
  std::atomic<bool> m_cancel{false};
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_stop = false;
  std::thread m_thread;  // last: started once the rest is built
};

std::string endpoint_of(Cloud cloud) {
  switch (cloud) {
    case Cloud::aws: return imds_endpoint();
    case Cloud::gce: return gce_endpoint();
    case Cloud::azure: return azure_endpoint();
  }
  return "";
}

}  // namespace

std::optional<Cloud> detect_cloud(const std::string& dmi_dir) {
  // An endpoint the environment names is where the operator says the cloud is.
  if (!env_or_empty("AWS_EC2_METADATA_SERVICE_ENDPOINT").empty() && !aws_disabled()) return Cloud::aws;
  if (!env_or_empty("GCE_METADATA_HOST").empty()) return Cloud::gce;
  if (!env_or_empty("WALSHIP_AZURE_METADATA_ENDPOINT").empty()) return Cloud::azure;
  std::optional<Cloud> cloud =
      cloud_from_dmi(first_line_of(dmi_dir + "/sys_vendor"), first_line_of(dmi_dir + "/board_vendor"),
                     first_line_of(dmi_dir + "/product_name"), first_line_of(dmi_dir + "/bios_vendor"));
  if (cloud == Cloud::aws && aws_disabled()) return std::nullopt;
  return cloud;
}

std::unique_ptr<NoticeWatcher> start_notice_watcher(NoticeMode mode, NoticeCallback notify) {
  std::optional<Cloud> cloud;
  switch (mode) {
    case NoticeMode::off: return nullptr;
    case NoticeMode::aws: cloud = Cloud::aws; break;
    case NoticeMode::gce: cloud = Cloud::gce; break;
    case NoticeMode::azure: cloud = Cloud::azure; break;
    case NoticeMode::detect: {
      // A test points this at a folder of its own; on a real machine the kernel's.
      std::string dmi_dir = env_or_empty("WALSHIP_TEST_DMI_DIR");
      if (dmi_dir.empty()) dmi_dir = "/sys/class/dmi/id";
      cloud = detect_cloud(dmi_dir);
      if (!cloud) {
        log(LogLevel::debug, "no cloud detected: not watching for preemption notices");
        return nullptr;
      }
      break;
    }
  }
  return std::make_unique<MetadataWatcher>(*cloud, endpoint_of(*cloud), mode == NoticeMode::detect,
                                           std::move(notify));
}

}  // namespace walship::cloud
