#include "cmd/storage_open.h"

#include "backends/registry.h"
#include "backends/retrying_storage.h"

namespace walship::cmd {

std::unique_ptr<Storage> open_replica(const std::string& url, const StorageSettings& settings) {
  return std::make_unique<RetryingStorage>(open_storage(url, settings));
}

}  // namespace walship::cmd
