// A point in time as the command line gives it (`ls --since`, `ls --until`,
// `restore --timestamp`): RFC 3339 with a zone, or a duration ago ("15m",
// "-15m", "2h", "7d": the durations walship.toml uses). Pure: `now_ms` is
// passed in.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace walship {

// Milliseconds since the epoch, or nullopt when `text` is neither form (or
// the duration reaches before 1970).
std::optional<uint64_t> parse_time_arg(std::string_view text, uint64_t now_ms);

}  // namespace walship
