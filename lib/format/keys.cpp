#include "lib/format/keys.h"

#include "lib/util/error.h"

namespace walship::format {

namespace {

constexpr size_t k_txid_digits = 16;
constexpr std::string_view k_snapshot_ext = ".snap";
constexpr std::string_view k_delta_ext = ".delta";
constexpr std::string_view k_fence_ext = ".fence";
constexpr int k_max_level = 3;

// Removes `prefix` from the front of `text`; false (text unchanged) if absent.
bool consume(std::string_view& text, std::string_view prefix) {
  if (!text.starts_with(prefix)) return false;
  text.remove_prefix(prefix.size());
  return true;
}

// Removes exactly one TXID from the front of `text`.
std::optional<uint64_t> consume_txid(std::string_view& text) {
  if (text.size() < k_txid_digits) return std::nullopt;
  const auto txid = parse_txid_hex(text.substr(0, k_txid_digits));
  if (txid) text.remove_prefix(k_txid_digits);
  return txid;
}

}  // namespace

std::string txid_hex(uint64_t txid) {
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out(k_txid_digits, '0');
  for (size_t i = k_txid_digits; i-- > 0; txid >>= 4) out[i] = k_digits[txid & 0xf];
  return out;
}

std::optional<uint64_t> parse_txid_hex(std::string_view text) {
  if (text.size() != k_txid_digits) return std::nullopt;
  uint64_t value = 0;
  for (const char c : text) {
    // Lower case only: an upper-case twin would sort differently and could
    // name the same TXID twice.
    uint64_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    value = (value << 4) | digit;
  }
  return value;
}

std::string snapshot_key(uint64_t txid) {
  return std::string(k_snapshot_prefix) + txid_hex(txid) + std::string(k_snapshot_ext);
}

std::string l0_delta_key(uint64_t min_txid) {
  return std::string(k_delta_prefix) + "L0/" + txid_hex(min_txid) + std::string(k_delta_ext);
}

std::string delta_key(int level, uint64_t min_txid, uint64_t max_txid) {
  // Callers pass constants or planned ranges; a bad one is a bug that must not
  // reach storage as a key no planner would ever read back.
  if (level < 1 || level > k_max_level) {
    throw Failure("internal error: delta level " + std::to_string(level) + " is not 1.." +
                  std::to_string(k_max_level));
  }
  if (min_txid > max_txid) {
    throw Failure("internal error: delta range " + txid_hex(min_txid) + "-" + txid_hex(max_txid) +
                  " is reversed");
  }
  return std::string(k_delta_prefix) + "L" + std::to_string(level) + "/" + txid_hex(min_txid) + "-" +
         txid_hex(max_txid) + std::string(k_delta_ext);
}

std::string fence_key(const FenceInfo& fence) {
  return std::string(k_fence_prefix) + txid_hex(fence.after) + "-" + txid_hex(fence.fence) +
         std::string(k_fence_ext);
}

std::optional<FenceInfo> parse_fence_key(std::string_view key) {
  if (!consume(key, k_fence_prefix)) return std::nullopt;
  const auto after = consume_txid(key);
  if (!after || !consume(key, "-")) return std::nullopt;
  const auto fence = consume_txid(key);
  if (!fence || key != k_fence_ext || *fence <= *after) return std::nullopt;
  return FenceInfo{*after, *fence};
}

std::string lease_key(uint64_t seq) { return std::string(k_lease_prefix) + txid_hex(seq); }

std::optional<uint64_t> parse_lease_key(std::string_view key) {
  if (!consume(key, k_lease_prefix)) return std::nullopt;
  return parse_txid_hex(key);
}

std::optional<KeyInfo> parse_key(std::string_view key) {
  KeyInfo info;
  if (consume(key, k_snapshot_prefix)) {
    const auto txid = consume_txid(key);
    if (!txid || key != k_snapshot_ext) return std::nullopt;
    info.kind = ObjectKind::snapshot;
    info.min_txid = *txid;
    info.max_txid = *txid;
    return info;
  }
  if (!consume(key, k_delta_prefix) || !consume(key, "L")) return std::nullopt;
  // One digit 0..3 then '/': rejects "L4", "L01", "Lx" and "L/".
  if (key.size() < 2 || key[0] < '0' || key[0] > '0' + k_max_level || key[1] != '/') return std::nullopt;
  info.kind = ObjectKind::delta;
  info.level = key[0] - '0';
  key.remove_prefix(2);
  const auto min = consume_txid(key);
  if (!min) return std::nullopt;
  info.min_txid = *min;
  if (info.level == 0) {
    // L0 files are named by min alone: the max is in the header.
    if (key != k_delta_ext) return std::nullopt;
    return info;
  }
  if (!consume(key, "-")) return std::nullopt;
  const auto max = consume_txid(key);
  if (!max || key != k_delta_ext || *max < *min) return std::nullopt;
  info.max_txid = *max;
  return info;
}

}  // namespace walship::format
