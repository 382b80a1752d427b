#include "lib/util/state_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <limits>
#include <span>

#include "lib/util/error.h"
#include "lib/util/fs.h"

namespace walship {

namespace {

std::optional<uint64_t> parse_digits(std::string_view text, unsigned base) {
  if (text.empty() || (base == 16 && text.size() > 16)) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    unsigned digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / base) return std::nullopt;
    value = value * base + digit;
  }
  return value;
}

std::optional<uint32_t> narrow(std::optional<uint64_t> value) {
  if (!value || *value > std::numeric_limits<uint32_t>::max()) return std::nullopt;
  return static_cast<uint32_t>(*value);
}

}  // namespace

void StateFields::set(std::string key, std::string value) {
  m_fields.emplace_back(std::move(key), std::move(value));
}

void StateFields::set_hex(std::string key, uint64_t value, int digits) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%0*llx", digits, static_cast<unsigned long long>(value));
  set(std::move(key), buf);
}

void StateFields::set_dec(std::string key, uint64_t value) { set(std::move(key), std::to_string(value)); }

std::optional<std::string> StateFields::text(std::string_view key) const {
  for (auto it = m_fields.rbegin(); it != m_fields.rend(); ++it) {
    if (it->first == key) return it->second;
  }
  return std::nullopt;
}

std::optional<uint64_t> StateFields::hex(std::string_view key) const {
  const std::optional<std::string> value = text(key);
  return value ? parse_digits(*value, 16) : std::nullopt;
}

std::optional<uint64_t> StateFields::dec(std::string_view key) const {
  const std::optional<std::string> value = text(key);
  return value ? parse_digits(*value, 10) : std::nullopt;
}

std::optional<uint32_t> StateFields::hex32(std::string_view key) const { return narrow(hex(key)); }

std::optional<uint32_t> StateFields::dec32(std::string_view key) const { return narrow(dec(key)); }

std::string render_state_file(std::string_view magic, const StateFields& fields) {
  std::string text(magic);
  text += '\n';
  for (const auto& [key, value] : fields.fields()) {
    text += key;
    text += ' ';
    text += value;
    text += '\n';
  }
  return text;
}

std::optional<StateFields> parse_state_file(std::string_view text, std::string_view magic) {
  StateFields fields;
  bool first = true;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    if (first) {
      if (line != magic) return std::nullopt;
      first = false;
      continue;
    }
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    fields.set(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
  }
  if (first) return std::nullopt;
  return fields;
}

std::optional<StateFields> read_state_file(const std::string& path, std::string_view magic) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return parse_state_file(text, magic);
}

void write_state_file(const std::string& path, std::string_view magic, const StateFields& fields,
                      mode_t mode) {
  const std::string text = render_state_file(magic, fields);
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) throw Failure(errno_message("unable to write '" + tmp + "'", errno));
    pwrite_all(fd.get(), std::as_bytes(std::span(text)), 0, tmp);
    fsync_fd(fd.get(), tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw Failure(errno_message("unable to rename '" + tmp + "' to '" + path + "'", errno));
  fsync_dir(dir_name(path));
}

}  // namespace walship
