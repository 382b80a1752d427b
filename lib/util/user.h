// The local user's name and home folder, without glibc's NSS: a static binary
// cannot load NSS modules (getpwuid() finds nothing, or warns at link time),
// and an empty container root has none, so /etc/passwd is read directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace walship {

struct PasswdEntry {
  std::string name;
  std::string home;
};

// The first entry for `uid` in passwd(5) text. Pure: malformed lines are skipped.
std::optional<PasswdEntry> find_passwd_entry(std::string_view passwd_text, uint32_t uid);

// $HOME if set, else the home folder /etc/passwd gives the real uid, else "/".
std::string home_dir();

// The name /etc/passwd gives the real uid, else $USER, else $LOGNAME, else "".
std::string user_name();

}  // namespace walship
