#include "lib/cloud/preemption_notice.h"

#include <array>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "lib/util/error.h"
#include "lib/util/time.h"

namespace walship {

namespace {

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.remove_suffix(1);
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n')) text.remove_prefix(1);
  return text;
}

nlohmann::json object_of(std::string_view body, const std::string& what) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_object()) throw Failure(what + " is not a JSON object");
  return doc;
}

std::string string_field(const nlohmann::json& doc, const char* name) {
  const auto it = doc.find(name);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

std::string_view cloud_name(Cloud cloud) {
  switch (cloud) {
    case Cloud::aws: return "aws";
    case Cloud::gce: return "gce";
    case Cloud::azure: return "azure";
  }
  return "unknown";
}

std::optional<NoticeMode> parse_notice_mode(std::string_view text) {
  if (text == "auto") return NoticeMode::detect;
  if (text == "aws") return NoticeMode::aws;
  if (text == "gce") return NoticeMode::gce;
  if (text == "azure") return NoticeMode::azure;
  if (text == "off") return NoticeMode::off;
  return std::nullopt;
}

std::optional<Cloud> cloud_from_dmi(std::string_view sys_vendor, std::string_view board_vendor,
                                    std::string_view product_name, std::string_view bios_vendor) {
  sys_vendor = trimmed(sys_vendor);
  board_vendor = trimmed(board_vendor);
  product_name = trimmed(product_name);
  bios_vendor = trimmed(bios_vendor);
  if (sys_vendor == "Amazon EC2" || board_vendor == "Amazon EC2" || bios_vendor == "Amazon EC2" ||
      product_name.starts_with("Amazon EC2"))
    return Cloud::aws;
  if (sys_vendor == "Google" || product_name == "Google Compute Engine" || bios_vendor == "Google")
    return Cloud::gce;
  if ((sys_vendor == "Microsoft Corporation" || board_vendor == "Microsoft Corporation") &&
      product_name == "Virtual Machine")
    return Cloud::azure;
  return std::nullopt;
}

PreemptionNotice parse_aws_instance_action(std::string_view body) {
  const nlohmann::json doc = object_of(body, "the spot instance-action document");
  const std::string action = string_field(doc, "action");
  const std::string time = string_field(doc, "time");
  if (action.empty()) throw Failure("the spot instance-action document has no \"action\"");
  PreemptionNotice notice;
  notice.cloud = Cloud::aws;
  notice.what = "spot instance-action " + action;
  if (!time.empty()) {
    notice.at_ms = parse_rfc3339(time);
    if (!notice.at_ms)
      throw Failure("the spot instance-action document has an unreadable time '" + time + "'");
  }
  return notice;
}

PreemptionNotice parse_aws_rebalance(std::string_view body) {
  const nlohmann::json doc = object_of(body, "the rebalance recommendation document");
  const std::string time = string_field(doc, "noticeTime");
  if (time.empty() || !parse_rfc3339(time))
    throw Failure("the rebalance recommendation document has no readable \"noticeTime\"");
  PreemptionNotice notice;
  notice.cloud = Cloud::aws;
  notice.what = "rebalance recommendation";
  return notice;
}

bool parse_gce_preempted(std::string_view body) {
  const std::string_view value = trimmed(body);
  if (value == "TRUE") return true;
  if (value == "FALSE") return false;
  throw Failure("GCE's instance/preempted is '" + std::string(value.substr(0, 40)) + "', not TRUE or FALSE");
}

AzureEvents parse_azure_events(std::string_view body) {
  const nlohmann::json doc = object_of(body, "the scheduled events document");
  const auto incarnation = doc.find("DocumentIncarnation");
  const auto events = doc.find("Events");
  if (incarnation == doc.end() || !incarnation->is_number_integer() || events == doc.end() ||
      !events->is_array())
    throw Failure("the scheduled events document lacks DocumentIncarnation or Events");
  AzureEvents out;
  out.incarnation = incarnation->get<int64_t>();
  for (const nlohmann::json& event : *events) {
    if (!event.is_object()) continue;
    const std::string type = string_field(event, "EventType");
    if (type != "Preempt" && type != "Terminate") continue;
    PreemptionNotice notice;
    notice.cloud = Cloud::azure;
    notice.what = "scheduled event " + type;
    const std::string id = string_field(event, "EventId");
    if (!id.empty()) notice.what += " " + id;
    const std::string not_before = string_field(event, "NotBefore");
    if (!not_before.empty()) {
      notice.at_ms = parse_http_date(not_before);
      if (!notice.at_ms)
        throw Failure("the scheduled event " + id + " has an unreadable NotBefore '" + not_before + "'");
    }
    out.notice = std::move(notice);
    break;
  }
  return out;
}

std::optional<uint64_t> parse_http_date(std::string_view text) {
  // "Mon, 19 Sep 2016 18:29:47 GMT"
  static constexpr std::array<std::string_view, 12> k_months = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::string copy(trimmed(text));
  char weekday[4] = {}, month[4] = {}, zone[4] = {};
  int day = 0, year = 0, hour = 0, minute = 0, second = 0, used = 0;
  if (std::sscanf(copy.c_str(), "%3s, %d %3s %d %d:%d:%d %3s%n", weekday, &day, month, &year, &hour, &minute,
                  &second, zone, &used) != 8 ||
      static_cast<size_t>(used) != copy.size() || std::string_view(zone) != "GMT" || copy[3] != ',')
    return std::nullopt;
  int mon = -1;
  for (size_t i = 0; i < k_months.size(); ++i) {
    if (k_months[i] == month) mon = static_cast<int>(i);
  }
  if (mon < 0 || day < 1 || day > 31 || year < 1970 || hour > 23 || minute > 59 || second > 60 || hour < 0 ||
      minute < 0 || second < 0)
    return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const time_t t = ::timegm(&tm);
  if (t < 0) return std::nullopt;
  return static_cast<uint64_t>(t) * 1000;
}

NoticeDeadline notice_deadline(const PreemptionNotice& notice, uint64_t now_ms) {
  NoticeDeadline out;
  if (!notice.at_ms) {
    out.time = "unknown";
    return out;
  }
  out.time = format_rfc3339(*notice.at_ms);
  out.seconds_left = (static_cast<int64_t>(*notice.at_ms) - static_cast<int64_t>(now_ms)) / 1000;
  return out;
}

void add_notice_metrics(PrometheusText& out, const NoticeStatus& status, uint64_t now_ms) {
  MetricLabels labels;
  if (status.cloud) labels.emplace_back("cloud", std::string(cloud_name(*status.cloud)));
  out.counter("walship_preemption_notices_total",
              "Preemption notices the cloud's metadata service gave (spot instance-action, rebalance "
              "recommendation, GCE preempted, Azure Preempt)",
              labels, status.notices);
  if (status.at_ms) {
    const double left = *status.at_ms > now_ms ? static_cast<double>(*status.at_ms - now_ms) / 1000.0 : 0.0;
    out.gauge_seconds("walship_preemption_notice_seconds_left",
                      "Seconds until the stop the newest preemption notice announced (0 once past)", labels,
                      left);
  }
}

}  // namespace walship
