// How walship names the temp files it writes beside a final name before
// renaming them into place (the file and SFTP backends): one convention, so
// listings skip exactly these names and keys can never collide with them.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace walship {

// Every temp name is ".<final base name>" + this + random hex.
inline constexpr std::string_view k_temp_marker = ".walship-tmp-";

// `2 * bytes` lower-case hex digits from getrandom(2). Not a seeded PRNG:
// forked children racing on one key would share its state and pick the same
// names. Falls back to the pid and a stack address when getrandom fails.
std::string random_hex(size_t bytes);

// A fresh temp path beside `final_path` ("dir/name" ->
// "dir/.name.walship-tmp-<16 hex digits>"), different at each call.
std::string temp_path_for(const std::string& final_path);

// True for a name temp_path_for() makes: hidden, and containing the marker.
bool is_temp_name(std::string_view name);

}  // namespace walship
