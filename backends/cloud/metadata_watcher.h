// The preemption notice watcher (lib/cloud/preemption_notice.h's
// NoticeWatcher) over the clouds' metadata services, on a thread of its own:
// AWS IMDSv2 `spot/instance-action` and the rebalance recommendation every
// 5 s (AWS's advice), GCE `instance/preempted` with `wait_for_change` (a long
// poll: the server answers when the value changes), Azure Scheduled Events
// every second. Each distinct notice is handed to the callback once; errors
// are logged and retried, never fatal.
//
// Endpoints: $AWS_EC2_METADATA_SERVICE_ENDPOINT (as the AWS SDKs; off with
// $AWS_EC2_METADATA_DISABLED=true), $GCE_METADATA_HOST (host[:port], as
// Google's libraries), $WALSHIP_AZURE_METADATA_ENDPOINT (a URL); by default
// the link-local services.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "lib/cloud/preemption_notice.h"

namespace walship::cloud {

// What `--preemption-notice auto` found: the cloud whose endpoint the
// environment names, else the one the DMI strings under `dmi_dir` (normally
// /sys/class/dmi/id) name. Reads only local files: no request. nullopt: no
// known cloud.
std::optional<Cloud> detect_cloud(const std::string& dmi_dir);

// The watcher `mode` asks for, started; null for off, and for auto where no
// cloud is detected. `auto` watches quietly: if the detected cloud's service
// does not answer its first request, the watcher logs it once and ends.
std::unique_ptr<NoticeWatcher> start_notice_watcher(NoticeMode mode, NoticeCallback notify);

}  // namespace walship::cloud
