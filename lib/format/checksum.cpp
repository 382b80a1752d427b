#include "lib/format/checksum.h"

// Header-only use of xxHash: the static build links no extra library.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace walship::format {

uint64_t page_hash(uint32_t pgno, std::span<const std::byte> page) {
  // Seeding with pgno (rather than hashing it with the bytes) binds the page to
  // its position at no extra cost, so the XOR of equal pages at different
  // numbers does not cancel out.
  return XXH3_64bits_withSeed(page.data(), page.size(), pgno);
}

}  // namespace walship::format
