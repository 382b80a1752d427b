// `walship doctor URL`: what an operator checks first when a replica will not
// work. It opens the storage, names the backend and where its credentials come
// from (never a secret), does one LIST to prove access, and asks whether the
// store honours conditional writes (S3 learns it with a probe object written
// twice). Running it is I/O; rendering the report is pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lib/storage/storage.h"

namespace walship {

struct DoctorReport {
  std::string url;  // redacted
  StorageFacts facts;
  bool list_ok = false;
  uint64_t snapshots = 0;  // objects under snapshots/ that the LIST found
  std::string list_error;  // when !list_ok
  // Asked only after the LIST worked; nullopt when it was not asked.
  std::optional<bool> conditional_writes;
  std::string warning;  // Storage::warning() after the checks

  bool ok() const { return list_ok; }
};

// One LIST of `snapshots/`, then the conditional-write question, then the
// facts (which name the temporary credentials the LIST fetched). A failed
// LIST is recorded in the report, not thrown.
DoctorReport run_doctor(Storage& storage);

// Aligned "name  value" lines for stdout; `now_ms` to say how long
// temporary credentials have left. Pure.
std::string render_doctor(const DoctorReport& report, uint64_t now_ms);

}  // namespace walship
