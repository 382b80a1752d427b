#include "lib/storage/doctor.h"

#include <string_view>

#include "lib/util/time.h"

namespace walship {

DoctorReport run_doctor(Storage& storage) {
  DoctorReport report;
  report.url = storage.url();
  try {
    report.snapshots = storage.list("snapshots/").size();
    report.list_ok = true;
  } catch (const StorageError& e) {
    report.list_error = e.what();
  }
  if (report.list_ok) report.conditional_writes = storage.atomic_put_if_absent();
  report.facts = storage.facts();
  report.warning = storage.warning();
  return report;
}

namespace {

std::string minutes_left(uint64_t expires_ms, uint64_t now_ms) {
  if (expires_ms <= now_ms) return "expired";
  const uint64_t minutes = (expires_ms - now_ms) / 60'000;
  if (minutes < 120) return "in " + std::to_string(minutes) + " min";
  return "in " + std::to_string(minutes / 60) + " h";
}

}  // namespace

std::string render_doctor(const DoctorReport& report, uint64_t now_ms) {
  std::string out;
  auto line = [&out](const char* name, const std::string& value) {
    out += name;
    out.append(std::string_view(name).size() < 13 ? 13 - std::string_view(name).size() : 1, ' ');
    out += value + "\n";
  };
  line("replica", report.url);
  line("backend", report.facts.backend.empty() ? "unknown" : report.facts.backend);
  line("credentials", report.facts.credentials.empty() ? "none needed" : report.facts.credentials);
  if (report.facts.credentials_expire_ms != 0) {
    line("expires", format_rfc3339(report.facts.credentials_expire_ms) + " (" +
                        minutes_left(report.facts.credentials_expire_ms, now_ms) + ", renewed before then)");
  }
  if (report.list_ok) {
    line("list", "ok (" + std::to_string(report.snapshots) +
                     (report.snapshots == 1 ? " snapshot" : " snapshots") +
                     (report.snapshots == 0 ? ": no replica here yet" : "") + ")");
  } else {
    line("list", "failed: " + report.list_error);
  }
  if (report.conditional_writes) {
    line("conditional", *report.conditional_writes
                            ? "honoured (create-if-absent is atomic: leases and fences hold)"
                            : "not honoured (create-if-absent is check-then-put: leases are advisory)");
  }
  if (!report.warning.empty()) line("warning", report.warning);
  line("result", report.ok() ? "ok" : "failed");
  return out;
}

}  // namespace walship
