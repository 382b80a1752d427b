// lib/storage/doctor: what `walship doctor` finds and prints, against the
// in-memory backend (its facts are the default: no backend name).
#include <doctest.h>

#include <string>

#include "backends/memory/memory_storage.h"
#include "lib/storage/doctor.h"
#include "lib/util/byte_stream.h"

using namespace walship;

TEST_CASE("doctor lists once, asks about conditional writes and prints the facts, never failing silently") {
  MemoryStorage storage("memory://doctor");
  const std::string body = "x";
  MemorySource source(as_bytes(body));
  storage.put("snapshots/0000000000000001.snap", source);
  DoctorReport report = run_doctor(storage);
  CHECK(report.ok());
  CHECK(report.snapshots == 1);
  REQUIRE(report.conditional_writes);
  report.facts = {"s3", "role 'r' with the web identity token in /t", 3'600'000};
  CHECK(render_doctor(report, 0) ==
        "replica      memory://doctor\n"
        "backend      s3\n"
        "credentials  role 'r' with the web identity token in /t\n"
        "expires      1970-01-01T01:00:00.000Z (in 60 min, renewed before then)\n"
        "list         ok (1 snapshot)\n"
        "conditional  honoured (create-if-absent is atomic: leases and fences hold)\n"
        "result       ok\n");

  storage.set_fault_hook([](std::string_view op, const std::string&) {
    if (op == "list") throw StorageError("unable to list 'memory://doctor': HTTP 403: AccessDenied", false);
  });
  report = run_doctor(storage);
  CHECK_FALSE(report.ok());
  CHECK_FALSE(report.conditional_writes);  // not asked when nothing answers
  const std::string out = render_doctor(report, 0);
  CHECK(out.find("list         failed: unable to list 'memory://doctor': HTTP 403: AccessDenied\n") !=
        std::string::npos);
  CHECK(out.find("credentials  none needed\n") != std::string::npos);
  CHECK(out.ends_with("result       failed\n"));
}
