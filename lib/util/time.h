// Wall-clock time as milliseconds since the Unix epoch (UTC), and RFC 3339.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace walship {

// The wall clock, or the simulated one while set_simulated_now_ms() holds a value.
uint64_t now_ms();
// TEST ONLY: makes now_ms() return `ms` (nullopt: the wall clock again), so
// unit tests run a week of replication, compaction and retention in seconds.
// Nothing outside tests/ calls it.
void set_simulated_now_ms(std::optional<uint64_t> ms);
// "2026-11-21T22:33:04.123Z"
std::string format_rfc3339(uint64_t ms);
// Accepts "YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM]" ('t'/' ' separator too).
std::optional<uint64_t> parse_rfc3339(std::string_view text);

}  // namespace walship
