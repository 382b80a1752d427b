#include <doctest.h>

#include <string>

#include "lib/format/keys.h"
#include "lib/util/error.h"

using namespace walship;
using namespace walship::format;

namespace {

const std::string k_a = "00000000000000a1";
const std::string k_b = "00000000000000b2";

}  // namespace

TEST_SUITE_BEGIN("format/keys");

TEST_CASE("TXIDs are 16 lower-case hex digits so key order is TXID order") {
  CHECK(txid_hex(0) == "0000000000000000");
  CHECK(txid_hex(1) == "0000000000000001");
  CHECK(txid_hex(0xabcdef) == "0000000000abcdef");
  CHECK(txid_hex(UINT64_MAX) == "ffffffffffffffff");
  CHECK(txid_hex(0x0123456789abcdefull) == "0123456789abcdef");
  for (const uint64_t txid : {0ull, 1ull, 15ull, 16ull, 0xfedcba9876543210ull, ~0ull}) {
    CHECK(parse_txid_hex(txid_hex(txid)) == txid);
  }
  CHECK(txid_hex(0x9) < txid_hex(0xa));
  CHECK(txid_hex(0xff) < txid_hex(0x100));
}

TEST_CASE("parse_txid_hex accepts exactly 16 lower-case hex digits") {
  CHECK_FALSE(parse_txid_hex(""));
  CHECK_FALSE(parse_txid_hex("000000000000001"));    // 15
  CHECK_FALSE(parse_txid_hex("00000000000000001"));  // 17
  CHECK_FALSE(parse_txid_hex("00000000000000A1"));   // upper case
  CHECK_FALSE(parse_txid_hex("00000000000000g1"));
  CHECK_FALSE(parse_txid_hex("+000000000000001"));
  CHECK_FALSE(parse_txid_hex(" 000000000000001"));
  CHECK_FALSE(parse_txid_hex("0x000000000000a1"));
  CHECK(parse_txid_hex("00000000000000a1") == 0xa1u);
}

TEST_CASE("keys are formatted as the replica layout says") {
  CHECK(snapshot_key(0xa1) == "snapshots/" + k_a + ".snap");
  CHECK(l0_delta_key(0xa1) == "deltas/L0/" + k_a + ".delta");
  CHECK(delta_key(1, 0xa1, 0xb2) == "deltas/L1/" + k_a + "-" + k_b + ".delta");
  CHECK(delta_key(3, 0xa1, 0xa1) == "deltas/L3/" + k_a + "-" + k_a + ".delta");
  CHECK(snapshot_key(1).starts_with(k_snapshot_prefix));
  CHECK(l0_delta_key(1).starts_with(k_delta_prefix));
}

TEST_CASE("delta_key refuses a level or range no planner would read back") {
  CHECK_THROWS_AS(delta_key(0, 1, 2), Failure);
  CHECK_THROWS_AS(delta_key(4, 1, 2), Failure);
  CHECK_THROWS_AS(delta_key(-1, 1, 2), Failure);
  CHECK_THROWS_AS(delta_key(2, 3, 2), Failure);
}

TEST_CASE("every key the formatters make parses back to what made it") {
  CHECK(parse_key(snapshot_key(0xa1)) == KeyInfo{ObjectKind::snapshot, 0, 0xa1, 0xa1});
  CHECK(parse_key(l0_delta_key(0xa1)) == KeyInfo{ObjectKind::delta, 0, 0xa1, 0});
  for (int level = 1; level <= 3; ++level) {
    CHECK(parse_key(delta_key(level, 0xa1, 0xb2)) == KeyInfo{ObjectKind::delta, level, 0xa1, 0xb2});
  }
  CHECK(parse_key(snapshot_key(~0ull)) == KeyInfo{ObjectKind::snapshot, 0, ~0ull, ~0ull});
  CHECK(parse_key(delta_key(2, 0, ~0ull)) == KeyInfo{ObjectKind::delta, 2, 0, ~0ull});
}

TEST_CASE("near-miss keys are not replica objects") {
  const char* const rejects[] = {
      "",
      "snapshots/",
      "snapshots/000000000000a1.snap",     // 14 digits
      "snapshots/000000000000000a1.snap",  // 17 digits
      "snapshots/00000000000000a.snap",    // 15 digits
      "snapshots/00000000000000A1.snap",   // upper-case hex
      "snapshots/00000000000000a1.SNAP",
      "snapshots/00000000000000a1.snapshot",
      "snapshots/00000000000000a1.snap.tmp",
      "snapshots/00000000000000a1",
      "snapshots/00000000000000a1.delta",  // wrong extension
      "snapshots/00000000000000a1-00000000000000b2.snap",
      "snapshot/00000000000000a1.snap",
      "/snapshots/00000000000000a1.snap",
      "x/snapshots/00000000000000a1.snap",
      "deltas/L0/00000000000000a1.snap",  // wrong extension
      "deltas/L0/00000000000000a1",
      "deltas/L0/00000000000000a1-00000000000000b2.delta",  // L0 with a range
      "deltas/L0/0000000000000a1.delta",                    // 15 digits
      "deltas/L0/000000000000000a1.delta",                  // 17 digits
      "deltas/L0/00000000000000A1.delta",                   // upper case
      "deltas/L1/00000000000000a1.delta",                   // L1 without a range
      "deltas/L2/00000000000000a1-.delta",
      "deltas/L2/00000000000000a1-00000000000000B2.delta",
      "deltas/L2/00000000000000a1-0000000000000b2.delta",
      "deltas/L2/00000000000000a1-000000000000000b2.delta",
      "deltas/L2/00000000000000a1_00000000000000b2.delta",
      "deltas/L2/00000000000000b2-00000000000000a1.delta",  // reversed range
      "deltas/L4/00000000000000a1-00000000000000b2.delta",  // unknown level
      "deltas/L9/00000000000000a1-00000000000000b2.delta",
      "deltas/L01/00000000000000a1-00000000000000b2.delta",
      "deltas/Lx/00000000000000a1-00000000000000b2.delta",
      "deltas/l1/00000000000000a1-00000000000000b2.delta",
      "deltas/L/00000000000000a1.delta",
      "deltas/L",
      "deltas/L1",
      "deltas/L1/",
      "deltas/00000000000000a1.delta",
      "deltas/L1/00000000000000a1-00000000000000b2.delta/",
      "deltas/L1/00000000000000a1-00000000000000b2.deltas",
      "lease",
  };
  for (const char* key : rejects) {
    CAPTURE(key);
    CHECK_FALSE(parse_key(key).has_value());
  }
}

TEST_CASE("fence and lease keys round-trip and reject anything else") {
  const FenceInfo fence{0x1f, 0x20000000000};
  CHECK(fence_key(fence) == "fences/000000000000001f-0000020000000000.fence");
  CHECK(parse_fence_key(fence_key(fence)) == fence);
  CHECK_FALSE(parse_key(fence_key(fence)).has_value());  // never a snapshot or a delta
  for (const char* key :
       {"fences/000000000000001f-000000000000001f.fence",  // empty range
        "fences/0000000000000020-000000000000001f.fence",  // reversed
        "fences/000000000000001f.fence", "fences/000000000000001f-0000020000000000",
        "fences/000000000000001F-0000020000000000.fence", "fence/000000000000001f-0000020000000000.fence"}) {
    CAPTURE(key);
    CHECK_FALSE(parse_fence_key(key).has_value());
  }
  CHECK(lease_key(7) == "lease/0000000000000007");
  CHECK(parse_lease_key("lease/0000000000000007") == 7u);
  CHECK_FALSE(parse_lease_key("lease/7").has_value());
  CHECK_FALSE(parse_lease_key("lease").has_value());
  CHECK_FALSE(parse_lease_key("lease/0000000000000007.tmp").has_value());
}

TEST_SUITE_END();
