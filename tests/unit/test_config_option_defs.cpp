// The option table: one default and one check per option, the same for a
// flag and a walship.toml key.
#include <doctest.h>

#include <map>
#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/config/option_defs.h"
#include "lib/util/error.h"

using namespace walship;

namespace {

EnvLookup no_env() {
  return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

// Every field an option can set, as text, so two settings compare whole.
std::string describe(const DatabaseSettings& s) {
  const ReplicatorOptions& r = s.replicator;
  std::string out =
      "sync=" + std::to_string(s.sync_interval_ms) + " snap=" + std::to_string(r.snapshot_interval_ms) +
      " ckpt=" + std::to_string(r.checkpoint_pages) + " trunc=" + std::to_string(r.truncate_pages) +
      " wal=" + std::to_string(r.enable_wal) + " ret=" + std::to_string(r.retention_enabled) +
      " reti=" + std::to_string(r.retention_interval_ms) +
      " within=" + std::to_string(r.retention.keep_within_ms) +
      " last=" + std::to_string(r.retention.keep_last) + " min=" + std::to_string(r.retention.keep_minutely) +
      " hour=" + std::to_string(r.retention.keep_hourly) + " day=" + std::to_string(r.retention.keep_daily) +
      " week=" + std::to_string(r.retention.keep_weekly) +
      " month=" + std::to_string(r.retention.keep_monthly) + " compaction=";
  for (const CompactionLevel& l : r.compaction)
    out += std::to_string(l.level) + ":" + std::to_string(l.span_ms) + ",";
  return out;
}

std::string describe(const FollowOptions& f) {
  return "poll=" + std::to_string(f.poll_interval_ms) + " list=" + std::to_string(f.list_interval_ms) +
         " ckpt=" + std::to_string(f.checkpoint_pages) + " par=" + std::to_string(f.parallelism);
}

// What the flag parser makes of `--NAME TEXT`: the settings, or the error.
std::string from_flag(const OptionDef& def, const std::string& text) {
  try {
    if (def.scope & (k_scope_replicate | k_scope_retention)) {
      DatabaseSettings s;
      apply_replicate_option(s, def.name, text, "--" + std::string(def.name));
      return describe(s);
    }
    FollowOptions f;
    apply_follow_option(f, def.name, text, "--" + std::string(def.name));
    return describe(f);
  } catch (const UsageError& e) {
    return std::string("error: ") + e.what();
  }
}

// What walship.toml makes of `NAME = VALUE` (VALUE as written: quoted or
// bare), with the flag's error form: the "--" and the "w.toml:N: " go.
std::string from_key(const OptionDef& def, const std::string& value) {
  const bool follow = (def.scope & (k_scope_replicate | k_scope_retention)) == 0;
  const std::string text = std::string("[[databases]]\n") + (follow ? "role = \"serve-replica\"\n" : "") +
                           "path = \"/a.db\"\nreplica = \"/r\"\n" + std::string(def.name) + " = " + value +
                           "\n";
  const int line = follow ? 5 : 4;
  try {
    const ReplicateConfig config = parse_config(text, "w.toml", no_env());
    return follow ? describe(config.followers.at(0).options) : describe(config.databases.at(0).settings);
  } catch (const UsageError& e) {
    std::string message = e.what();
    const std::string prefix = "w.toml:" + std::to_string(line) + ": ";
    CHECK_MESSAGE(message.starts_with(prefix), message);
    message = message.substr(prefix.size());
    const std::string shown = "invalid " + std::string(def.name) + " ";
    if (message.starts_with(shown)) message = "invalid --" + message.substr(8);
    return "error: " + message;
  }
}

bool has_key_and_flag(const OptionDef& def) {
  return (def.scope & (k_scope_flag_only | k_scope_process)) == 0;
}

const std::vector<std::string> k_texts = {"",
                                          "0",
                                          "1",
                                          "5",
                                          "500ms",
                                          "1s",
                                          "1m",
                                          "24h",
                                          "7d",
                                          "true",
                                          "false",
                                          "soon",
                                          "-1",
                                          "1.5",
                                          "1 s",
                                          "2147483647",
                                          "2147483648",
                                          "36500d",
                                          "36501d",
                                          "9300000000000000",
                                          "99999999999999999999999s",
                                          "64",
                                          "65",
                                          "${X}"};

}  // namespace

TEST_CASE("the structs' defaults are the table's") {
  const DatabaseSettings s;
  const ReplicatorOptions& r = s.replicator;
  CHECK(s.sync_interval_ms == option("sync-interval").default_value);
  CHECK(r.snapshot_interval_ms == option("snapshot-interval").default_value);
  CHECK(r.checkpoint_pages == option("checkpoint-pages").default_value);
  CHECK(r.truncate_pages == option("truncate-pages").default_value);
  CHECK(r.enable_wal == (option("enable-wal").default_value != 0));
  CHECK(!r.compaction.empty() == (option("compaction").default_value != 0));
  CHECK(r.retention_enabled == (option("retention").default_value != 0));
  CHECK(r.retention_interval_ms == option("retention-interval").default_value);
  REQUIRE(r.compaction.size() == 3);
  CHECK(r.compaction[0].span_ms == option("l1-span").default_value);
  CHECK(r.compaction[1].span_ms == option("l2-span").default_value);
  CHECK(r.compaction[2].span_ms == option("l3-span").default_value);
  const FollowOptions f;
  CHECK(f.poll_interval_ms == option("poll-interval").default_value);
  CHECK(f.list_interval_ms == option("list-interval").default_value);
  CHECK(f.checkpoint_pages == option("checkpoint-pages").default_value);
  CHECK(f.parallelism == option("parallelism").default_value);
}

TEST_CASE("every default is inside its limits and reads back from its --help text") {
  for (const OptionDef& def : option_defs()) {
    CAPTURE(def.name);
    CHECK(def.min <= def.max);
    if (!def.has_default) {
      CHECK(render_default(def).empty());
      continue;
    }
    CHECK(def.min <= def.default_value);
    CHECK(def.default_value <= def.max);
    CHECK(parse_option_value(def, render_default(def), def.name) == def.default_value);
  }
  CHECK(render_default(option("sync-interval")) == "1s");
  CHECK(render_default(option("snapshot-interval")) == "24h");
  CHECK(render_default(option("list-interval")) == "1m");
  CHECK(render_default(option("checkpoint-pages")) == "1000");
  CHECK(render_default(option("compaction")) == "true");
  CHECK(option_flag(option("compaction")) == "--no-compaction");
  CHECK(option_flag(option("enable-wal")) == "--enable-wal");
}

TEST_CASE("a flag and a walship.toml key give the same value or the same error for the same text") {
  int compared = 0;
  for (const OptionDef& def : option_defs()) {
    if (!has_key_and_flag(def)) continue;
    for (const std::string& text : k_texts) {
      CAPTURE(def.name);
      CAPTURE(text);
      const std::string flag = from_flag(def, text);
      if (text == "${X}") {
        // An unset variable is the file's own error, never a default.
        CHECK(from_key(def, "\"" + text + "\"") ==
              "error: environment variable 'X' is not set (used as ${X})");
        continue;
      }
      CHECK(from_key(def, "\"" + text + "\"") == flag);
      // A bare integer or boolean is the same text as the quoted one.
      const bool bare_integer =
          !text.empty() && text.size() < 19 && text.find_first_not_of("0123456789") == std::string::npos;
      if (bare_integer || text == "true" || text == "false") CHECK(from_key(def, text) == flag);
      ++compared;
    }
  }
  CHECK(compared > 300);
}

TEST_CASE("durations: bare numbers are seconds, overflow is an error, never a wrapped value") {
  const OptionDef& snap = option("snapshot-interval");
  CHECK(parse_option_value(snap, "3600", "snapshot-interval") == 3'600'000);
  CHECK(parse_option_value(snap, "0", "snapshot-interval") == 0);
  CHECK(from_key(snap, "9300000000000000") ==
        "error: invalid --snapshot-interval '9300000000000000': it must be at most 36500d");
  CHECK(from_key(option("sync-interval"), "9300000000000000") ==
        "error: invalid --sync-interval '9300000000000000': it must be at most 36500d");
  CHECK(from_key(option("sync-interval"), "0") ==
        "error: invalid --sync-interval '0': it must be more than 0");
  // A minimum above zero is named.
  CHECK(from_key(option("lease-ttl"), "\"1s\"") == "error: invalid --lease-ttl '1s': it must be at least 3s");
  CHECK(from_key(option("sync-interval"), "\"soon\"") ==
        "error: invalid --sync-interval 'soon': give a duration from 1ms to 36500d such as 500ms, 1s, 5m, 1h "
        "or 7d (a bare number is seconds)");
  CHECK(from_key(snap, "-5") ==
        "error: invalid --snapshot-interval '-5': give a duration from 0 to 36500d such as 500ms, 1s, 5m, 1h "
        "or 7d (a bare number is seconds)");
  CHECK(from_key(snap, "1.5").starts_with("error: invalid --snapshot-interval '1.5': give a duration"));
  CHECK_FALSE(parse_duration_ms("36501d"));
  CHECK(parse_duration_ms("36500d") == k_max_duration_ms);
}

TEST_CASE("booleans are exactly true or false; counts whole numbers within their limits") {
  CHECK(from_key(option("retention"), "1") ==
        "error: invalid --retention '1': expected exactly true or false");
  CHECK(from_key(option("enable-wal"), "\"yes\"") ==
        "error: invalid --enable-wal 'yes': expected exactly true or false");
  CHECK(from_key(option("enable-wal"), "\"\"") ==
        "error: invalid --enable-wal '': expected exactly true or false");
  CHECK(from_key(option("parallelism"), "65") ==
        "error: invalid --parallelism '65': give a whole number from 1 to 64");
  CHECK(from_key(option("checkpoint-pages"), "0") ==
        "error: invalid --checkpoint-pages '0': give a whole number from 1 to 2147483647");
  CHECK(from_key(option("keep-daily"), "\"30\"") == from_key(option("keep-daily"), "30"));
}
