// Opens the storage a replica URL names, wrapped in RetryingStorage so every
// command retries transient failures the same way.
#pragma once

#include <memory>
#include <string>

#include "backends/registry.h"
#include "backends/storage.h"

namespace walship::cmd {

std::unique_ptr<Storage> open_replica(const std::string& url, const StorageSettings& settings = {});

}  // namespace walship::cmd
