// Opens the storage a replica URL names, wrapped in RetryingStorage so every
// command retries transient failures the same way.
#pragma once

#include <memory>
#include <string>

#include "backends/storage.h"

namespace walship::cmd {

std::unique_ptr<Storage> open_replica(const std::string& url);

}  // namespace walship::cmd
