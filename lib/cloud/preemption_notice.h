// Preemption notices (DESIGN.md, "Preemption notices"): what a cloud's
// metadata service says before it stops the machine, read here without any
// I/O. The parsers take each provider's document as text; the detection
// takes the DMI strings the kernel exposes; the metrics render a status.
// The watcher that fetches the documents is backends/cloud's
// (metadata_watcher.h); the replicate loop only sees the NoticeWatcher
// interface below, the way it sees Storage.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "lib/util/prometheus_text.h"

namespace walship {

enum class Cloud { aws, gce, azure };

// "aws", "gce", "azure".
std::string_view cloud_name(Cloud cloud);

// --preemption-notice: `detect` is auto.
enum class NoticeMode { detect, aws, gce, azure, off };

// "auto", "aws", "gce", "azure", "off"; nullopt for anything else.
std::optional<NoticeMode> parse_notice_mode(std::string_view text);

// A notice: which cloud, what it announced, and when the machine stops if
// the cloud says (AWS instance-action's time, Azure's NotBefore) or its
// documented notice gives it (GCE: 30 s after the notice).
struct PreemptionNotice {
  Cloud cloud = Cloud::aws;
  std::string what;               // "spot instance-action terminate", "rebalance recommendation"...
  std::optional<uint64_t> at_ms;  // ms since the epoch
  bool estimated = false;         // at_ms is the documented notice, not a time the cloud sent
};

// The cloud the machine runs on from its DMI strings (/sys/class/dmi/id/
// sys_vendor, board_vendor, product_name, bios_vendor), as the clouds' own
// SDKs detect it: "Amazon EC2" (and bios_vendor "Amazon EC2" on Nitro), "Google"
// (product_name "Google Compute Engine"), "Microsoft Corporation" with a
// product_name of "Virtual Machine" (Hyper-V on a desk says the same, so Azure
// is only a guess the metadata service then confirms). nullopt: none of them.
std::optional<Cloud> cloud_from_dmi(std::string_view sys_vendor, std::string_view board_vendor,
                                    std::string_view product_name, std::string_view bios_vendor);

// AWS `latest/meta-data/spot/instance-action` (200 only once a notice is
// out): {"action": "terminate"|"stop"|"hibernate", "time": "2026-...Z"}.
// Throws Failure for a body that is not that document.
PreemptionNotice parse_aws_instance_action(std::string_view body);

// AWS `latest/meta-data/events/recommendations/rebalance` (200 once
// recommended): {"noticeTime": "2026-...Z"}. The recommendation announces a
// raised risk, not a time: at_ms stays empty. Throws Failure.
PreemptionNotice parse_aws_rebalance(std::string_view body);

// GCE `computeMetadata/v1/instance/preempted`: "TRUE" or "FALSE" (a trailing
// newline allowed). Throws Failure for anything else.
bool parse_gce_preempted(std::string_view body);

// How long GCE gives a preempted VM between the notice and the stop.
inline constexpr uint64_t k_gce_notice_ms = 30'000;

// Azure Scheduled Events (`metadata/scheduledevents?api-version=2020-07-01`):
// {"DocumentIncarnation": N, "Events": [{"EventId", "EventType", "ResourceType",
// "Resources", "EventStatus", "NotBefore", ...}]}. The first event of type
// Preempt (a Spot VM's eviction) or Terminate (a scale set's deletion), with
// NotBefore ("Mon, 19 Sep 2016 18:29:47 GMT"; empty once it started) as its
// time; nullopt when there is none. Throws Failure for a body that is not
// that document.
struct AzureEvents {
  int64_t incarnation = 0;
  std::optional<PreemptionNotice> notice;
};
AzureEvents parse_azure_events(std::string_view body);

// An RFC 1123 date as HTTP and Azure write it: "Mon, 19 Sep 2016 18:29:47
// GMT". nullopt when it is not one.
std::optional<uint64_t> parse_http_date(std::string_view text);

// "time=2026-...Z seconds_left=118" for the log: empty parts left out.
struct NoticeDeadline {
  std::string time;  // RFC 3339, or "unknown"
  std::optional<int64_t> seconds_left;
};
NoticeDeadline notice_deadline(const PreemptionNotice& notice, uint64_t now_ms);

// What a replicate process saw of notices, for /metrics.
struct NoticeStatus {
  uint64_t notices = 0;           // every distinct notice
  std::optional<Cloud> cloud;     // the newest notice's
  std::optional<uint64_t> at_ms;  // the newest notice's announced stop
};

// walship_preemption_notices_total (always, 0 before any) and, once a notice
// gave a time, walship_preemption_notice_seconds_left (0 once past).
void add_notice_metrics(PrometheusText& out, const NoticeStatus& status, uint64_t now_ms);

// Called on the watcher's thread for every distinct notice.
using NoticeCallback = std::function<void(const PreemptionNotice&)>;

// Watches a cloud's metadata service on a thread of its own. Destroying it
// stops the thread, interrupting a request in flight (GCE's long poll).
class NoticeWatcher {
 public:
  virtual ~NoticeWatcher() = default;
  // Asks the thread to stop without waiting for it (the destructor waits).
  virtual void stop() = 0;
};

// Starts the watcher --preemption-notice asks for; null when there is
// nothing to watch (off, or auto on a machine of no known cloud).
using NoticeWatcherFactory = std::function<std::unique_ptr<NoticeWatcher>(NoticeCallback)>;

}  // namespace walship
