#include "lib/util/log.h"

#include <sys/stat.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "lib/util/time.h"

namespace walship {

namespace {

std::atomic<LogLevel> g_level{LogLevel::info};
std::atomic<LogFormat> g_format{LogFormat::text};
std::atomic<bool> g_timestamps{true};
std::mutex g_write_mutex;

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
    case LogLevel::off: break;
  }
  return "off";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

void append_quoted(std::string& out, std::string_view v) {
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

void append_json_value(std::string& out, const LogField& field) {
  if (field.kind == LogField::Kind::string) {
    append_quoted(out, field.value);
  } else {
    out += field.value;
  }
}

}  // namespace

LogField::LogField(std::string_view k, double v) : key(k), kind(Kind::number) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  value.assign(buf, ec == std::errc() ? end : buf);
  if (value.empty() || value.find_first_of("ni") != std::string::npos) {
    value = "0";  // JSON has no NaN or infinity; nothing logged is either
  }
}

void set_log_level(LogLevel level) { g_level = level; }
void set_log_format(LogFormat format) { g_format = format; }
LogFormat log_format() { return g_format.load(); }
void set_log_timestamps(bool on) { g_timestamps = on; }
bool log_enabled(LogLevel level) { return level >= g_level.load(std::memory_order_relaxed); }

std::string format_log_line(LogFormat format, LogLevel level, std::string_view msg,
                            std::initializer_list<LogField> fields, std::optional<uint64_t> time_ms) {
  std::string line;
  if (format == LogFormat::json) {
    line = "{";
    if (time_ms) line += "\"time\":\"" + format_rfc3339(*time_ms) + "\",";
    line += "\"level\":\"";
    line += level_name(level);
    line += "\",\"msg\":";
    append_quoted(line, msg);
    for (const LogField& field : fields) {
      line += ",\"";
      line += field.key;
      line += "\":";
      append_json_value(line, field);
    }
    line += "}";
  } else {
    if (time_ms) line = "time=" + format_rfc3339(*time_ms) + " ";
    line += "level=";
    line += level_name(level);
    line += " msg=";
    append_quoted(line, msg);
    for (const LogField& field : fields) {
      line += ' ';
      line += field.key;
      line += '=';
      if (needs_quotes(field.value)) {
        append_quoted(line, field.value);
      } else {
        line += field.value;
      }
    }
  }
  line += '\n';
  return line;
}

void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) {
  if (!log_enabled(level)) return;
  const std::optional<uint64_t> time = g_timestamps.load() ? std::optional(now_ms()) : std::nullopt;
  const std::string line = format_log_line(g_format.load(), level, msg, fields, time);
  std::lock_guard<std::mutex> lock(g_write_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long device = 0;
  unsigned long long inode = 0;
  if (std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
  struct stat st {};
  if (::fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == device &&
         static_cast<unsigned long long>(st.st_ino) == inode;
}

void write_error_line(std::string_view message, int exit_code) {
  std::string line;
  if (g_format.load() == LogFormat::json) {
    const std::optional<uint64_t> time = g_timestamps.load() ? std::optional(now_ms()) : std::nullopt;
    line = format_log_line(LogFormat::json, LogLevel::error, message, {{"exit_code", exit_code}}, time);
  } else {
    line = "walship: " + std::string(message) + "\n";
  }
  std::lock_guard<std::mutex> lock(g_write_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace walship
