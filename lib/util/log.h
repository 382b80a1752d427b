// Logs go to stderr as one key=value line per event (or JSON with
// --log-format json); stdout is reserved for a command's result. Every line
// starts with its time (RFC 3339, milliseconds, UTC) unless timestamps are
// off (journald stamps lines itself). Values keep their type: numbers and
// booleans are JSON numbers and booleans, everything else a string.
// Callers check the level before building fields:
//   if (log_enabled(LogLevel::info)) log(LogLevel::info, "shipped", {{"txid", txid_hex(t)}, {"pages", 3}});
// The keys "time", "level" and "msg" belong to the line itself; a field
// never uses them (a restore point's time is "point_time").
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace walship {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };
enum class LogFormat { text, json };

// One key and its value, with the value's type for JSON.
struct LogField {
  enum class Kind { string, number, boolean };

  LogField(std::string_view k, std::string v) : key(k), value(std::move(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(v) {}
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), kind(Kind::boolean) {}
  template <std::integral T>
  requires(!std::same_as<T, bool> && !std::same_as<T, char>) LogField(std::string_view k, T v)
      : key(k), value(std::to_string(v)), kind(Kind::number) {}
  LogField(std::string_view k, double v);

  std::string_view key;
  std::string value;
  Kind kind = Kind::string;
};

void set_log_level(LogLevel level);
void set_log_format(LogFormat format);
LogFormat log_format();
// Whether lines start with time= (default: yes).
void set_log_timestamps(bool on);
bool log_enabled(LogLevel level);
void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {});

// Formats one line without writing it (exposed for tests); `time_ms`:
// the event's time, nullopt for none.
std::string format_log_line(LogFormat format, LogLevel level, std::string_view msg,
                            std::initializer_list<LogField> fields,
                            std::optional<uint64_t> time_ms = std::nullopt);

// Whether stderr is connected to the systemd journal: $JOURNAL_STREAM
// ("DEVICE:INODE", set by systemd for a service's stdout/stderr) names the
// same file as file descriptor 2. The journal stamps every line itself.
bool stderr_is_journal();

// The final line of a failed command, on stderr: "walship: MESSAGE" in text,
// an error-level JSON line with "exit_code" in JSON.
void write_error_line(std::string_view message, int exit_code);

}  // namespace walship
