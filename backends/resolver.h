// Host name resolution through c-ares rather than getaddrinfo(): glibc's
// getaddrinfo() goes through NSS, which a static binary cannot load. c-ares
// reads /etc/hosts and /etc/resolv.conf itself (libcurl resolves with it too).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

namespace walship {

struct ResolvedAddress {
  sockaddr_storage address{};
  socklen_t length = 0;
  int family = 0;
};

// The addresses of host:port for a TCP connection, in the order to try them.
// "localhost" is the loopback address even where /etc/hosts is missing (an
// empty container root). Throws a StorageError naming `where`: transient for
// a timeout or a failing name server, not for a name that does not exist.
std::vector<ResolvedAddress> resolve_host(const std::string& host, uint16_t port, const std::string& where,
                                          int timeout_ms);

}  // namespace walship
