#include "backends/sftp/known_hosts.h"

#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include <algorithm>
#include <array>
#include <sstream>

namespace walship {

namespace {

constexpr std::string_view k_all_methods[] = {"ssh-ed25519",
                                              "ecdsa-sha2-nistp256",
                                              "ecdsa-sha2-nistp384",
                                              "ecdsa-sha2-nistp521",
                                              "rsa-sha2-512",
                                              "rsa-sha2-256",
                                              "ssh-rsa"};

std::string base64_decode(std::string_view text) {
  std::string out(text.size(), '\0');
  size_t length = 0;
  if (mbedtls_base64_decode(reinterpret_cast<unsigned char*>(out.data()), out.size(), &length,
                            reinterpret_cast<const unsigned char*>(text.data()), text.size()) != 0) {
    return {};
  }
  out.resize(length);
  return out;
}

// "|1|base64(salt)|base64(HMAC-SHA1(salt, name))"
bool hashed_name_matches(std::string_view entry, const std::string& name) {
  if (!entry.starts_with("|1|")) return false;
  entry.remove_prefix(3);
  const size_t bar = entry.find('|');
  if (bar == std::string_view::npos) return false;
  const std::string salt = base64_decode(entry.substr(0, bar));
  const std::string hash = base64_decode(entry.substr(bar + 1));
  if (salt.empty() || hash.size() != 20) return false;
  std::array<unsigned char, 20> mac{};
  if (mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA1),
                      reinterpret_cast<const unsigned char*>(salt.data()), salt.size(),
                      reinterpret_cast<const unsigned char*>(name.data()), name.size(), mac.data()) != 0) {
    return false;
  }
  return std::equal(mac.begin(), mac.end(), reinterpret_cast<const unsigned char*>(hash.data()));
}

bool hosts_field_matches(std::string_view field, const std::string& name) {
  if (field.starts_with("|1|")) return hashed_name_matches(field, name);
  bool matched = false;
  size_t start = 0;
  while (start <= field.size()) {
    const size_t comma = std::min(field.find(',', start), field.size());
    std::string_view pattern = field.substr(start, comma - start);
    start = comma + 1;
    if (pattern.starts_with('!')) {
      if (pattern.substr(1) == name) return false;  // negated: never this host
      continue;
    }
    if (pattern == name) matched = true;
  }
  return matched;
}

}  // namespace

std::vector<std::string> known_host_key_types(std::string_view text, const std::string& host, uint16_t port) {
  const std::string name = port == 22 ? host : "[" + host + "]:" + std::to_string(port);
  std::vector<std::string> types;
  std::istringstream lines{std::string(text)};
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string hosts;
    std::string type;
    if (!(fields >> hosts) || hosts.starts_with('#') || hosts.starts_with('@')) continue;
    if (!(fields >> type)) continue;
    if (!hosts_field_matches(hosts, name)) continue;
    if (std::find(types.begin(), types.end(), type) == types.end()) types.push_back(type);
  }
  return types;
}

std::string host_key_method_preference(const std::vector<std::string>& known_types,
                                       const std::vector<std::string>& supported) {
  std::vector<std::string_view> order;
  auto add = [&](std::string_view method) {
    if (std::find(supported.begin(), supported.end(), method) == supported.end()) return;
    if (std::find(order.begin(), order.end(), method) == order.end()) order.push_back(method);
  };
  for (const std::string& type : known_types) {
    if (type == "ssh-rsa") {
      add("rsa-sha2-512");
      add("rsa-sha2-256");
      add("ssh-rsa");
    } else if (std::find(std::begin(k_all_methods), std::end(k_all_methods), type) !=
               std::end(k_all_methods)) {
      add(type);
    }
  }
  for (std::string_view method : k_all_methods) add(method);
  std::string out;
  for (std::string_view method : order) {
    if (!out.empty()) out += ',';
    out += method;
  }
  return out;
}

}  // namespace walship
