// Logs go to stderr as one key=value line per event (or JSON with
// --log-format json); stdout is reserved for a command's result.
// Callers check the level before building fields:
//   if (log_enabled(LogLevel::info)) log(LogLevel::info, "shipped", {{"txid", "42"}});
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace walship {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };
enum class LogFormat { text, json };

using LogField = std::pair<std::string_view, std::string>;

void set_log_level(LogLevel level);
void set_log_format(LogFormat format);
bool log_enabled(LogLevel level);
void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {});

// Formats one line without writing it (exposed for tests).
std::string format_log_line(LogFormat format, LogLevel level, std::string_view msg,
                            std::initializer_list<LogField> fields);

}  // namespace walship
