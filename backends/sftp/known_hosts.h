// Reading OpenSSH known_hosts files for what libssh2 does not do itself:
// which host key types are known for a host, so the SSH handshake asks the
// server for one of those (as OpenSSH's client does) instead of libssh2's
// fixed preference, which would pick a key type the file does not hold and
// then fail verification for a host that is in fact known. Pure: no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace walship {

// The key types ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ...) of the
// entries of `text` (a known_hosts file) that name `host` on `port`, in file
// order, without repeats. Matches plain names ("host", "[host]:port" when
// port != 22, comma-separated lists) and hashed ones ("|1|salt|hash",
// HMAC-SHA1); skips comments, @cert-authority/@revoked lines and wildcard
// patterns.
std::vector<std::string> known_host_key_types(std::string_view text, const std::string& host, uint16_t port);

// A libssh2 host key method preference list: the SSH algorithm names for
// `known_types` first (ssh-rsa keys sign with rsa-sha2-512/256), then the
// other common ones, so a server without any known type still completes the
// handshake and is then refused with a clear message. Only names in
// `supported` (what this libssh2 build offers) appear: libssh2 1.10 corrupts
// memory when it has to strip an unsupported name itself.
std::string host_key_method_preference(const std::vector<std::string>& known_types,
                                       const std::vector<std::string>& supported);

}  // namespace walship
