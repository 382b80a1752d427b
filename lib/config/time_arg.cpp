#include "lib/config/time_arg.h"

#include "lib/config/option_defs.h"
#include "lib/util/time.h"

namespace walship {

std::optional<uint64_t> parse_time_arg(std::string_view text, uint64_t now_ms) {
  if (const std::optional<uint64_t> absolute = parse_rfc3339(text)) return absolute;
  std::string_view duration = text;
  if (duration.starts_with('-')) duration.remove_prefix(1);
  // A bare number is seconds in walship.toml, but "--since 5" is more likely
  // a mistake than five seconds ago: ask for a unit.
  if (duration.empty() || (duration.back() >= '0' && duration.back() <= '9')) return std::nullopt;
  const std::optional<int64_t> ago = parse_duration_ms(duration);
  if (!ago || static_cast<uint64_t>(*ago) > now_ms) return std::nullopt;
  return now_ms - static_cast<uint64_t>(*ago);
}

}  // namespace walship
