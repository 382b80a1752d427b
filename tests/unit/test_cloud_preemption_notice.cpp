#include <doctest.h>

#include <string>

#include "lib/cloud/preemption_notice.h"
#include "lib/config/option_defs.h"
#include "lib/util/error.h"
#include "lib/util/prometheus_text.h"
#include "lib/util/time.h"

using namespace walship;

TEST_CASE("a notice: AWS's spot instance-action document gives the action and its time") {
  // The document as AWS's "Spot Instance interruption notices" page shows it.
  const PreemptionNotice n =
      parse_aws_instance_action(R"({"action": "terminate", "time": "2017-09-18T08:22:00Z"})");
  CHECK(n.cloud == Cloud::aws);
  CHECK(n.what == "spot instance-action terminate");
  REQUIRE(n.at_ms);
  CHECK(*n.at_ms == *parse_rfc3339("2017-09-18T08:22:00Z"));
  CHECK_FALSE(n.estimated);
  CHECK(parse_aws_instance_action(R"({"action": "stop", "time": "2026-01-02T03:04:05Z"})").what ==
        "spot instance-action stop");
  CHECK(parse_aws_instance_action(R"({"action": "hibernate", "time": "2026-01-02T03:04:05Z"})").at_ms);
}

TEST_CASE("a notice: a malformed instance-action document is an error, never a silent no-notice") {
  CHECK_THROWS_AS(parse_aws_instance_action("<html>404 - Not Found</html>"), Failure);
  CHECK_THROWS_AS(parse_aws_instance_action(R"({"time": "2026-01-02T03:04:05Z"})"), Failure);
  CHECK_THROWS_AS(parse_aws_instance_action(R"({"action": "terminate", "time": "soon"})"), Failure);
  CHECK_THROWS_AS(parse_aws_instance_action("[]"), Failure);
}

TEST_CASE("a notice: AWS's rebalance recommendation announces a risk, not a time") {
  const PreemptionNotice n = parse_aws_rebalance(R"({"noticeTime": "2020-10-27T08:22:00Z"})");
  CHECK(n.cloud == Cloud::aws);
  CHECK(n.what == "rebalance recommendation");
  CHECK_FALSE(n.at_ms);
  CHECK_THROWS_AS(parse_aws_rebalance(R"({"noticeTime": ""})"), Failure);
  CHECK_THROWS_AS(parse_aws_rebalance("{}"), Failure);
}

TEST_CASE("a notice: GCE's preempted value is TRUE or FALSE, nothing else") {
  CHECK(parse_gce_preempted("TRUE"));
  CHECK(parse_gce_preempted("TRUE\n"));
  CHECK_FALSE(parse_gce_preempted("FALSE"));
  CHECK_THROWS_AS(parse_gce_preempted("true"), Failure);
  CHECK_THROWS_AS(parse_gce_preempted(""), Failure);
  CHECK_THROWS_AS(parse_gce_preempted("<html>"), Failure);
}

TEST_CASE("a notice: Azure's scheduled events give the Preempt event and its NotBefore") {
  // The document's shape as Azure's "Scheduled Events for Linux VMs" page shows it.
  const std::string doc = R"({
    "DocumentIncarnation": 3,
    "Events": [
      {"EventId": "602d9444-d2cd-49c7-8624-8643e7171297", "EventType": "Freeze",
       "ResourceType": "VirtualMachine", "Resources": ["vm1"], "EventStatus": "Scheduled",
       "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT", "Description": "", "EventSource": "Platform",
       "DurationInSeconds": 5},
      {"EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123", "EventType": "Preempt",
       "ResourceType": "VirtualMachine", "Resources": ["vm1"], "EventStatus": "Scheduled",
       "NotBefore": "Mon, 19 Sep 2016 18:30:17 GMT", "Description": "", "EventSource": "Platform",
       "DurationInSeconds": -1}
    ]})";
  const AzureEvents events = parse_azure_events(doc);
  CHECK(events.incarnation == 3);
  REQUIRE(events.notice);
  CHECK(events.notice->cloud == Cloud::azure);
  CHECK(events.notice->what == "scheduled event Preempt C7061BAC-AFDC-4513-B24B-AA5F13A16123");
  CHECK(events.notice->at_ms == *parse_rfc3339("2016-09-19T18:30:17Z"));
}

TEST_CASE("a notice: Azure's document without a Preempt event, or an empty one, is no notice") {
  CHECK_FALSE(parse_azure_events(R"({"DocumentIncarnation": 0, "Events": []})").notice);
  CHECK_FALSE(parse_azure_events(R"({"DocumentIncarnation": 1, "Events": [{"EventType": "Reboot",
      "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT"}]})")
                  .notice);
  // A started event has an empty NotBefore: a notice without a time.
  const AzureEvents started = parse_azure_events(
      R"({"DocumentIncarnation": 2, "Events": [{"EventId": "x", "EventType": "Preempt", "EventStatus": "Started", "NotBefore": ""}]})");
  REQUIRE(started.notice);
  CHECK_FALSE(started.notice->at_ms);
  CHECK(parse_azure_events(R"({"DocumentIncarnation": 2, "Events": [{"EventType": "Terminate"}]})").notice);
  CHECK_THROWS_AS(parse_azure_events(R"({"Events": []})"), Failure);
  CHECK_THROWS_AS(parse_azure_events("not json"), Failure);
  CHECK_THROWS_AS(
      parse_azure_events(
          R"({"DocumentIncarnation": 2, "Events": [{"EventType": "Preempt", "NotBefore": "tomorrow"}]})"),
      Failure);
}

TEST_CASE("a notice's time: RFC 1123 dates as Azure writes them") {
  CHECK(parse_http_date("Mon, 19 Sep 2016 18:29:47 GMT") == *parse_rfc3339("2016-09-19T18:29:47Z"));
  CHECK(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT") == 0);
  CHECK_FALSE(parse_http_date("Mon, 19 Sep 2016 18:29:47"));
  CHECK_FALSE(parse_http_date("Mon, 19 Sept 2016 18:29:47 GMT"));
  CHECK_FALSE(parse_http_date("Mon 19 Sep 2016 18:29:47 GMT"));
  CHECK_FALSE(parse_http_date("Mon, 19 Sep 2016 25:29:47 GMT"));
  CHECK_FALSE(parse_http_date("2016-09-19T18:29:47Z"));
  CHECK_FALSE(parse_http_date(""));
}

TEST_CASE("auto notice detection: the DMI strings each cloud's SDKs read") {
  CHECK(cloud_from_dmi("Amazon EC2\n", "Amazon EC2\n", "m5.large\n", "Amazon EC2\n") == Cloud::aws);
  // An instance whose system vendor is the hypervisor's: the BIOS vendor names EC2.
  CHECK(cloud_from_dmi("Xen", "", "HVM domU", "Amazon EC2") == Cloud::aws);
  CHECK(cloud_from_dmi("Google", "Google", "Google Compute Engine", "Google") == Cloud::gce);
  CHECK(cloud_from_dmi("", "", "Google Compute Engine", "") == Cloud::gce);
  CHECK(cloud_from_dmi("Microsoft Corporation", "Microsoft Corporation", "Virtual Machine",
                       "Microsoft Corporation") == Cloud::azure);
  CHECK_FALSE(cloud_from_dmi("Microsoft Corporation", "", "Surface Laptop 5", ""));
  CHECK_FALSE(cloud_from_dmi("LENOVO", "LENOVO", "20XW", "LENOVO"));
  CHECK_FALSE(cloud_from_dmi("QEMU", "", "Standard PC (Q35 + ICH9, 2009)", "SeaBIOS"));
  CHECK_FALSE(cloud_from_dmi("", "", "", ""));
}

TEST_CASE("notice modes: the option's words and nothing else") {
  CHECK(parse_notice_mode("auto") == NoticeMode::detect);
  CHECK(parse_notice_mode("aws") == NoticeMode::aws);
  CHECK(parse_notice_mode("gce") == NoticeMode::gce);
  CHECK(parse_notice_mode("azure") == NoticeMode::azure);
  CHECK(parse_notice_mode("off") == NoticeMode::off);
  CHECK_FALSE(parse_notice_mode("AWS"));
  CHECK_FALSE(parse_notice_mode(""));
  // The option table's words are the same, in the same order.
  const OptionDef& def = option("preemption-notice");
  for (std::string_view word : option_choices(def)) CHECK(parse_notice_mode(word));
  CHECK(render_default(def) == "auto");
  CHECK(parse_option_value(def, "gce", "--preemption-notice") == 2);
  CHECK_THROWS_WITH_AS(parse_option_value(def, "ec2", "--preemption-notice"),
                       "invalid --preemption-notice 'ec2': expected auto, aws, gce, azure or off",
                       UsageError);
  CHECK(render_default(option("notice-sync-interval")) == "100ms");
  CHECK_THROWS_AS(parse_option_value(option("on-notice"), "", "--on-notice"), UsageError);
}

TEST_CASE("a notice's deadline and metrics: seconds left, counted per notice") {
  PreemptionNotice n;
  n.cloud = Cloud::aws;
  n.at_ms = 1'000'000;
  const NoticeDeadline d = notice_deadline(n, 880'000);
  CHECK(d.time == format_rfc3339(1'000'000));
  CHECK(d.seconds_left == 120);
  n.at_ms.reset();
  CHECK(notice_deadline(n, 0).time == "unknown");
  CHECK_FALSE(notice_deadline(n, 0).seconds_left);

  PrometheusText none;
  add_notice_metrics(none, NoticeStatus{}, 0);
  CHECK(none.str().find("walship_preemption_notices_total 0\n") != std::string::npos);
  CHECK(none.str().find("seconds_left") == std::string::npos);

  NoticeStatus status;
  status.notices = 2;
  status.cloud = Cloud::gce;
  status.at_ms = 1'030'000;
  PrometheusText out;
  add_notice_metrics(out, status, 1'000'000);
  CHECK(out.str().find("walship_preemption_notices_total{cloud=\"gce\"} 2\n") != std::string::npos);
  CHECK(out.str().find("walship_preemption_notice_seconds_left{cloud=\"gce\"} 30.000\n") !=
        std::string::npos);
  PrometheusText past;
  add_notice_metrics(past, status, 2'000'000);
  CHECK(past.str().find("walship_preemption_notice_seconds_left{cloud=\"gce\"} 0.000\n") !=
        std::string::npos);
}
