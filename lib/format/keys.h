// Object keys of the replica layout (DESIGN.md). TXIDs are 16 lower-case hex
// digits so that key order is TXID order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace walship::format {

enum class ObjectKind { snapshot, delta };

struct KeyInfo {
  ObjectKind kind = ObjectKind::snapshot;
  int level = 0;          // deltas: 0..3
  uint64_t min_txid = 0;  // snapshots: the TXID; L0 deltas: min only (max is in the header)
  uint64_t max_txid = 0;  // snapshots: == min_txid; L0: 0 (unknown from the key); L1+: from the key
  bool operator==(const KeyInfo&) const = default;
};

// 16 lower-case hex digits.
std::string txid_hex(uint64_t txid);
// Parses exactly 16 lower-case hex digits; nullopt otherwise.
std::optional<uint64_t> parse_txid_hex(std::string_view text);

// snapshots/<txid>.snap
std::string snapshot_key(uint64_t txid);
// deltas/L0/<min>.delta
std::string l0_delta_key(uint64_t min_txid);
// deltas/L<level>/<min>-<max>.delta for level 1..3 and min <= max; throws
// Failure otherwise (a caller bug: no planner would read such a key back).
std::string delta_key(int level, uint64_t min_txid, uint64_t max_txid);

// Recognises keys made by the functions above; anything else is nullopt (and
// is ignored by planners, so stray files in a prefix do no harm).
std::optional<KeyInfo> parse_key(std::string_view key);

// fences/<after>-<fence>.fence (DESIGN.md, "Fencing"): written by a writer
// that took the replica over from one that may still be alive. Objects of
// TXIDs after `after` and before `fence` can only be the old writer's
// (`after` is the newest TXID the new writer saw, `fence` its first), so
// every reader ignores them.
struct FenceInfo {
  uint64_t after = 0;
  uint64_t fence = 0;
  bool operator==(const FenceInfo&) const = default;
};
std::string fence_key(const FenceInfo& fence);
std::optional<FenceInfo> parse_fence_key(std::string_view key);

// lease/<seq>: the replica's lease records, one per acquisition, renewal or
// release, each written only if absent (DESIGN.md, "Fencing").
std::string lease_key(uint64_t seq);
std::optional<uint64_t> parse_lease_key(std::string_view key);

inline constexpr std::string_view k_snapshot_prefix = "snapshots/";
inline constexpr std::string_view k_delta_prefix = "deltas/";
inline constexpr std::string_view k_fence_prefix = "fences/";
inline constexpr std::string_view k_lease_prefix = "lease/";

}  // namespace walship::format
