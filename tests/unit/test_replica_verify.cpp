#include <doctest.h>

#include <algorithm>

#include "backends/memory/memory_storage.h"
#include "lib/format/keys.h"
#include "lib/replica/lease.h"
#include "lib/replica/restore.h"
#include "lib/replica/verify.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "tests/unit/replica_builder.h"

using namespace walship;
using walship::test::ReplicaBuilder;

namespace {

constexpr uint64_t k_t0 = 1'795'000'000'000;

// Snapshot 1, deltas 2..24 twenty seconds apart, and a second snapshot at 12.
void build(MemoryStorage& storage, ReplicaBuilder& builder) {
  for (int i = 0; i < 24; ++i) {
    const uint64_t t = k_t0 + static_cast<uint64_t>(i) * 20'000;
    builder.commit(t);
    if (builder.txid() == 12) builder.snapshot(t);
  }
  (void)storage;
}

std::vector<std::byte> read_object(MemoryStorage& storage, const std::string& key) {
  MemorySink sink;
  REQUIRE(storage.get(key, sink));
  return {sink.data().begin(), sink.data().end()};
}

void write_object(MemoryStorage& storage, const std::string& key, const std::vector<std::byte>& bytes) {
  MemorySource source(bytes);
  storage.put(key, source);
}

VerifyReport verify(MemoryStorage& storage, bool full = false) {
  VerifyOptions options;
  options.quiet = true;
  options.full = full;
  return run_verify(options, storage);
}

const VerifyProblem* problem_for(const VerifyReport& report, const std::string& key) {
  const auto it = std::find_if(report.problems.begin(), report.problems.end(),
                               [&](const VerifyProblem& p) { return p.key == key; });
  return it == report.problems.end() ? nullptr : &*it;
}

// Restores `txid`; returns the error, or "" after checking the rows.
std::string restore_error(MemoryStorage& storage, const ReplicaBuilder& builder, uint64_t txid) {
  RestoreOptions options;
  options.output_path = builder.scratch() + "/restored.db";
  options.force = true;
  options.quiet = true;
  options.target.txid = txid;
  try {
    run_restore(options, storage);
  } catch (const Error& e) {
    return e.what();
  }
  CHECK(test::count_rows(options.output_path) == builder.rows_at().at(txid));
  return "";
}

}  // namespace

TEST_CASE("verify finds a healthy replica healthy, every point checked, --full included") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  const VerifyReport report = verify(storage, true);
  CHECK(report.healthy());
  CHECK(report.points.size() == 24);
  CHECK(report.snapshots == 2);
  CHECK(report.broken_points() == 0);
  CHECK(std::all_of(report.points.begin(), report.points.end(),
                    [](const VerifyPoint& p) { return p.restored; }));
  const std::string table = render_verify_table(report);
  CHECK(table.find("result     OK") != std::string::npos);
  CHECK(table.find("points     24 restorable") != std::string::npos);
  CHECK(render_verify_json(report).find("\"healthy\": true") != std::string::npos);
}

TEST_CASE("verify finds a flipped byte, names the object and the points it breaks") {
  set_log_level(LogLevel::error);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  const std::string key = format::l0_delta_key(7);
  std::vector<std::byte> bytes = read_object(storage, key);
  bytes[bytes.size() / 2] ^= std::byte{0x40};
  write_object(storage, key, bytes);

  const VerifyReport report = verify(storage);
  CHECK(!report.healthy());
  const VerifyProblem* problem = problem_for(report, key);
  REQUIRE(problem != nullptr);
  CHECK(problem->error.find("corrupt replica file") != std::string::npos);
  // Points 7..11 need delta 7; snapshot 12 starts a chain that does not.
  CHECK(problem->breaks == std::vector<uint64_t>{7, 8, 9, 10, 11});
  CHECK(render_verify_table(report).find("breaks 5 restore points: 0000000000000007") != std::string::npos);

  CHECK(restore_error(storage, builder, 6).empty());
  CHECK(restore_error(storage, builder, 15).empty());
  CHECK(restore_error(storage, builder, 9).find(key) != std::string::npos);
}

TEST_CASE("verify finds a deleted delta: the missing key and every point after it") {
  set_log_level(LogLevel::error);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  storage.remove({format::l0_delta_key(15)});
  const VerifyReport report = verify(storage);
  const VerifyProblem* problem = problem_for(report, format::l0_delta_key(15) + " (missing)");
  REQUIRE(problem != nullptr);
  CHECK(problem->breaks.front() == 16);
  CHECK(problem->breaks.back() == 24);
  CHECK(restore_error(storage, builder, 14).empty());
  CHECK(restore_error(storage, builder, 20).find("is not a restore point") != std::string::npos);
}

TEST_CASE("verify finds a truncated snapshot; points from the older snapshot still restore") {
  set_log_level(LogLevel::error);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  const std::string key = format::snapshot_key(12);
  const std::vector<std::byte> bytes = read_object(storage, key);
  REQUIRE(bytes.size() > 100);
  write_object(storage, key, {bytes.begin(), bytes.end() - 40});
  const VerifyReport report = verify(storage);
  const VerifyProblem* problem = problem_for(report, key);
  REQUIRE(problem != nullptr);
  CHECK(problem->breaks.front() == 12);
  CHECK(problem->breaks.back() == 24);
  CHECK(restore_error(storage, builder, 11).empty());
  // Restore skips the bad snapshot and chains from the older one instead.
  CHECK(restore_error(storage, builder, 13).empty());
  CHECK(restore_error(storage, builder, 24).empty());
}

TEST_CASE("verify finds two swapped objects") {
  set_log_level(LogLevel::error);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  const std::string a = format::l0_delta_key(4);
  const std::string b = format::l0_delta_key(5);
  const std::vector<std::byte> bytes_a = read_object(storage, a);
  write_object(storage, a, read_object(storage, b));
  write_object(storage, b, bytes_a);
  const VerifyReport report = verify(storage);
  REQUIRE(problem_for(report, a) != nullptr);
  REQUIRE(problem_for(report, b) != nullptr);
  CHECK(problem_for(report, a)->error.find("swapped") != std::string::npos);
  CHECK(restore_error(storage, builder, 3).empty());
  CHECK(!restore_error(storage, builder, 5).empty());
}

TEST_CASE("verify finds a delta whose content does not chain (same TXIDs, other bytes)") {
  set_log_level(LogLevel::error);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  // A well-formed delta for TXID 9 whose pre-checksum is not the state at 8.
  MemorySink sink;
  format::FileHeader header{format::FileKind::delta, 512, 9, 9, 4, k_t0, 12345};
  format::ReplicaWriter writer(sink, header, 1);
  std::vector<std::byte> page(512, std::byte{7});
  writer.add_page(2, page);
  writer.finish(678);
  write_object(storage, format::l0_delta_key(9), {sink.data().begin(), sink.data().end()});
  const VerifyReport report = verify(storage);
  const VerifyProblem* problem = problem_for(report, format::l0_delta_key(9));
  REQUIRE(problem != nullptr);
  CHECK(problem->error.find("pre-checksum") != std::string::npos);
  CHECK(problem->breaks == std::vector<uint64_t>{9, 10, 11});
  CHECK(restore_error(storage, builder, 10).find("chain") != std::string::npos);
}

TEST_CASE("verify names what a fenced writer wrote after a takeover, and is healthy") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  // A takeover after TXID 24, and the object the paused old writer landed
  // after it: superseded, used by no restore.
  write_fence(storage, {24, fence_txid(1)});
  write_object(storage, format::l0_delta_key(25), read_object(storage, format::l0_delta_key(24)));
  const VerifyReport report = verify(storage);
  CHECK(report.healthy());
  CHECK(report.points.size() == 24);
  REQUIRE(report.superseded.size() == 1);
  CHECK(report.superseded[0].key == format::l0_delta_key(25));
  CHECK(report.superseded[0].fence == fence_txid(1));
  const std::string table = render_verify_table(report);
  CHECK(table.find("superseded 1 object a fenced writer wrote after a takeover") != std::string::npos);
  CHECK(table.find("result     OK") != std::string::npos);
  const std::string json = render_verify_json(report);
  CHECK(json.find("\"object\": \"" + format::l0_delta_key(25) + "\"") != std::string::npos);
  // None: no line, an empty list.
  MemoryStorage plain;
  ReplicaBuilder other(plain);
  build(plain, other);
  CHECK(render_verify_table(verify(plain)).find("superseded") == std::string::npos);
  CHECK(render_verify_json(verify(plain)).find("\"superseded\": []") != std::string::npos);
}

TEST_CASE("verify --point checks one point; an unknown one cannot be checked") {
  set_log_level(LogLevel::warn);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  VerifyOptions options;
  options.quiet = true;
  options.point = 5;
  const VerifyReport report = run_verify(options, storage);
  REQUIRE(report.points.size() == 1);
  CHECK(report.points[0].txid == 5);
  options.point = 99;
  CHECK_THROWS_AS(run_verify(options, storage), Failure);
  MemoryStorage empty;
  options.point.reset();
  CHECK_THROWS_WITH_AS(run_verify(options, empty), doctest::Contains("no replica at"), Failure);
}

TEST_CASE("restore goes around a corrupt compacted file and a junk next-TXID delta; verify names both") {
  set_log_level(LogLevel::error);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  builder.compact(k_t0 + 24 * 20'000);
  std::string l1;
  for (const ObjectInfo& object : storage.list("")) {
    if (object.key.starts_with("deltas/L1/")) l1 = object.key;
  }
  REQUIRE(!l1.empty());
  std::vector<std::byte> bytes = read_object(storage, l1);
  REQUIRE(bytes.size() > 80);
  for (size_t i = 70; i < bytes.size(); i += 7) bytes[i] ^= std::byte{0x5a};
  write_object(storage, l1, bytes);
  const std::string junk = format::l0_delta_key(builder.txid() + 1);
  write_object(storage, junk, std::vector<std::byte>(200, std::byte{0x42}));

  // Junk under the next TXID's name claims nothing (nothing was written
  // there): the latest restore goes around it to the newest point.
  RestoreOptions options;
  options.output_path = builder.scratch() + "/latest.db";
  options.quiet = true;
  const RestoreResult result = run_restore(options, storage);
  CHECK(result.txid == builder.txid());
  CHECK(result.newest_txid == builder.txid());
  CHECK(test::count_rows(options.output_path) == builder.rows_at().at(builder.txid()));
  for (uint64_t txid : {uint64_t{5}, uint64_t{13}, builder.txid()})
    CHECK(restore_error(storage, builder, txid).empty());

  const VerifyReport report = verify(storage);
  CHECK(!report.healthy());
  CHECK(problem_for(report, l1) != nullptr);
  CHECK(problem_for(report, junk) != nullptr);
}

TEST_CASE(
    "a newest delta whose body is corrupt fails the latest restore; --allow-older restores the one before") {
  set_log_level(LogLevel::error);
  MemoryStorage storage;
  ReplicaBuilder builder(storage);
  build(storage, builder);
  const uint64_t newest = builder.txid();
  const std::string last = format::l0_delta_key(newest);
  std::vector<std::byte> bytes = read_object(storage, last);
  REQUIRE(bytes.size() > 80);
  for (size_t i = 70; i < bytes.size(); i += 7) bytes[i] ^= std::byte{0x5a};  // the header stays whole
  write_object(storage, last, bytes);

  RestoreOptions options;
  options.output_path = builder.scratch() + "/latest.db";
  options.quiet = true;
  std::string message;
  try {
    run_restore(options, storage);
  } catch (const UnreachableNewestError& e) {
    message = e.what();
  }
  CHECK(message.find("the newest TXID " + format::txid_hex(newest)) != std::string::npos);
  CHECK(message.find(last + " is broken") != std::string::npos);
  CHECK(message.find("newest reachable is " + format::txid_hex(newest - 1)) != std::string::npos);
  CHECK(!path_exists(options.output_path));

  options.target.allow_older = true;
  const RestoreResult result = run_restore(options, storage);
  CHECK(result.txid == newest - 1);
  CHECK(result.newest_txid == newest);
  CHECK(test::count_rows(options.output_path) == builder.rows_at().at(newest - 1));
}
