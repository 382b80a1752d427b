#include "lib/util/listen_address.h"

#include <arpa/inet.h>

#include <array>

#include "lib/util/error.h"

namespace walship {

ListenAddress parse_listen_address(const std::string& text, const std::string& what) {
  const size_t colon = text.rfind(':');
  std::string host = colon == std::string::npos ? "" : text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = colon == std::string::npos ? "" : text.substr(colon + 1);
  const bool digits =
      !port.empty() && port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos;
  if (host.empty() || !digits || std::stoi(port) > 65535) {
    throw UsageError("invalid " + what + " '" + text + "': give an address and port, e.g. 127.0.0.1:9090");
  }
  if (host == "localhost") host = "127.0.0.1";
  std::array<unsigned char, 16> address{};
  if (::inet_pton(AF_INET, host.c_str(), address.data()) != 1 &&
      ::inet_pton(AF_INET6, host.c_str(), address.data()) != 1) {
    throw UsageError("invalid " + what + " '" + text + "': '" + host +
                     "' is not an IP address; give one, e.g. 127.0.0.1:9090 or [::1]:9090");
  }
  return {host, std::stoi(port)};
}

}  // namespace walship
