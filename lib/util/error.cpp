#include "lib/util/error.h"

#include <cstring>

namespace walship {

std::string errno_message(const std::string& what, int err) { return what + ": " + std::strerror(err); }

}  // namespace walship
