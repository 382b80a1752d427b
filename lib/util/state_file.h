// The small local state files walship keeps beside a database, in
// "<db>-walship/": the replicator's "<id>.state" (what it shipped) and
// serve-replica's "follow" (what it applied). One format for both: a magic
// line naming the kind and its version, then one "key value" line per field,
// the value being the rest of the line. One reader and one writer, so both
// files parse alike and reach the disk alike: a temp file beside the final
// path, fsync, rename, fsync the directory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace walship {

// The fields of one state file, in the order they are written.
class StateFields {
 public:
  // Appends a field; `value` must hold no newline. A key set twice is
  // written twice and read back as its last value.
  void set(std::string key, std::string value);
  // Lower-case hex, zero-padded to `digits`.
  void set_hex(std::string key, uint64_t value, int digits = 16);
  void set_dec(std::string key, uint64_t value);

  // The last value of `key`, or nullopt when it is missing.
  std::optional<std::string> text(std::string_view key) const;
  // hex(): the value as 1 to 16 lower-case hex digits; dec(): as decimal
  // digits that fit 64 bits. nullopt when missing or anything else (a sign,
  // a space, upper case).
  std::optional<uint64_t> hex(std::string_view key) const;
  std::optional<uint64_t> dec(std::string_view key) const;
  // As above, and nullopt when the value does not fit 32 bits.
  std::optional<uint32_t> hex32(std::string_view key) const;
  std::optional<uint32_t> dec32(std::string_view key) const;

  const std::vector<std::pair<std::string, std::string>>& fields() const { return m_fields; }

 private:
  std::vector<std::pair<std::string, std::string>> m_fields;
};

// The file's text: `magic`, a newline, then "key value\n" per field.
std::string render_state_file(std::string_view magic, const StateFields& fields);

// Parses `text`; nullopt unless its first line is exactly `magic` and every
// further line is "key value" (a key, one space, the value).
std::optional<StateFields> parse_state_file(std::string_view text, std::string_view magic);

// Reads and parses the file at `path`; nullopt when it is missing,
// unreadable or not a `magic` state file (a state is a cache: the caller
// rebuilds it).
std::optional<StateFields> read_state_file(const std::string& path, std::string_view magic);

// Replaces the file at `path` durably and atomically: writes "<path>.tmp"
// (created with `mode`), fsyncs it, renames it onto `path` and fsyncs the
// directory, so a crash leaves the old file or the new one, never a torn
// one. A fixed temp name: one a killed process leaves behind is simply
// overwritten by the next save. Throws Failure naming the file.
void write_state_file(const std::string& path, std::string_view magic, const StateFields& fields,
                      mode_t mode);

}  // namespace walship
