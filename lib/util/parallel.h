// One small worker pool for "do each of these, a few at a time": reading
// replica headers ahead and verifying objects.
#pragma once

#include <cstddef>
#include <functional>

namespace walship {

// Calls body(i) once for each i in [0, count), on up to `parallelism`
// threads (the caller's among them; fewer when there are fewer items), in no
// set order. After the first exception no new index starts; once every
// thread has finished, that exception is rethrown.
void parallel_for(size_t count, int parallelism, const std::function<void(size_t)>& body);

}  // namespace walship
