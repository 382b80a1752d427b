#include "lib/util/user.h"

#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace walship {

namespace {

std::optional<PasswdEntry> current_entry() {
  std::ifstream in("/etc/passwd");
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return find_passwd_entry(text.str(), static_cast<uint32_t>(::getuid()));
}

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

}  // namespace

std::optional<PasswdEntry> find_passwd_entry(std::string_view passwd_text, uint32_t uid) {
  while (!passwd_text.empty()) {
    const size_t eol = passwd_text.find('\n');
    std::string_view line = passwd_text.substr(0, eol);
    passwd_text = eol == std::string_view::npos ? std::string_view{} : passwd_text.substr(eol + 1);
    // name:password:uid:gid:gecos:home:shell
    std::vector<std::string_view> fields;
    while (true) {
      const size_t colon = line.find(':');
      fields.push_back(line.substr(0, colon));
      if (colon == std::string_view::npos) break;
      line.remove_prefix(colon + 1);
    }
    if (fields.size() < 7 || fields[0].empty()) continue;
    uint32_t line_uid = 0;
    const std::string_view uid_text = fields[2];
    const auto [end, error] = std::from_chars(uid_text.data(), uid_text.data() + uid_text.size(), line_uid);
    if (error != std::errc{} || end != uid_text.data() + uid_text.size() || uid_text.empty()) continue;
    if (line_uid == uid) return PasswdEntry{std::string(fields[0]), std::string(fields[5])};
  }
  return std::nullopt;
}

std::string home_dir() {
  if (std::string home = env_or_empty("HOME"); !home.empty()) return home;
  if (std::optional<PasswdEntry> entry = current_entry(); entry && !entry->home.empty()) return entry->home;
  return "/";
}

std::string user_name() {
  if (std::optional<PasswdEntry> entry = current_entry()) return entry->name;
  if (std::string user = env_or_empty("USER"); !user.empty()) return user;
  return env_or_empty("LOGNAME");
}

}  // namespace walship
