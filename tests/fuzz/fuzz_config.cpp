// Feeds arbitrary text to the walship.toml parser. Beyond "no crash", every
// rejection must be a UsageError that names the file, so a person knows
// which file to fix.
#include <cstdlib>
#include <string>
#include <string_view>

#include "lib/config/config.h"
#include "lib/util/error.h"
#include "tests/fuzz/fuzz_target.h"

using namespace walship;

bool fuzz_accepts(const uint8_t* data, size_t size, std::string* why) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "HOME") return std::string("/root");
    return std::nullopt;
  };
  try {
    const ReplicateConfig config = parse_config(text, "fuzz.toml", env);
    for (const DatabaseConfig& db : config.databases) {
      if (db.path.empty() || db.path[0] != '/' || db.replicas.empty()) std::abort();
    }
    return true;
  } catch (const UsageError& e) {
    if (!std::string_view(e.what()).starts_with("fuzz.toml")) std::abort();
    if (why) *why = e.what();
    return false;
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_accepts(data, size);
  return 0;
}
