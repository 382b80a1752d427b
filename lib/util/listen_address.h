// The address an HTTP listener (`--http`, walship.toml's `http`) binds to:
// numeric only, so the static binary binds without glibc's NSS (getaddrinfo
// parses a numeric address itself). Pure: unit-tested without sockets.
#pragma once

#include <string>

namespace walship {

struct ListenAddress {
  std::string host;  // "127.0.0.1", "::1" (no brackets)
  int port = 0;
};

// Parses "ipv4:port", "[ipv6]:port" or "localhost:port" (taken as
// 127.0.0.1). `what` names the setting in messages ("--http", "'http'").
// Throws UsageError: "invalid --http 'x': give an address and port, e.g. ...".
ListenAddress parse_listen_address(const std::string& text, const std::string& what = "--http");

}  // namespace walship
