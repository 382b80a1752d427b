// Which host key types a known_hosts file holds for a host (the SSH
// handshake then asks for one of them), and the method list built from them.
#include <doctest.h>

#include <string>
#include <vector>

#include "backends/sftp/known_hosts.h"

using namespace walship;

namespace {

using Types = std::vector<std::string>;

constexpr const char* k_file =
    "# comment\n"
    "\n"
    "backup.example,10.0.0.5 ssh-rsa AAAArsa\n"
    "[127.0.0.1]:2222 ssh-ed25519 AAAAed\n"
    "|1|AAECAwQFBgcICQoLDA0ODxAREhM=|zKYaAqmSav3Qxr2sffNqWFIcbe4= ecdsa-sha2-nistp256 AAAAec\n"
    "|1|AAECAwQFBgcICQoLDA0ODxAREhM=|3MX7khpIsEgzmMeW/ZoZfLZzdV8= ssh-ed25519 AAAAed2\n"
    "@cert-authority *.example ssh-ed25519 AAAAca\n"
    "@revoked backup.example ecdsa-sha2-nistp521 AAAArev\n"
    "*.example ssh-dss AAAAwild\n"
    "backup.example ssh-rsa AAAArsa-again\n"
    "!other.example,other2.example ecdsa-sha2-nistp384 AAAAneg\n";

}  // namespace

TEST_CASE("known_hosts entries are matched by plain and hashed names, with the port") {
  CHECK(known_host_key_types(k_file, "backup.example", 22) == Types{"ssh-rsa", "ssh-ed25519"});
  CHECK(known_host_key_types(k_file, "10.0.0.5", 22) == Types{"ssh-rsa"});
  CHECK(known_host_key_types(k_file, "127.0.0.1", 2222) == Types{"ssh-ed25519", "ecdsa-sha2-nistp256"});
  CHECK(known_host_key_types(k_file, "127.0.0.1", 22).empty());  // another port is another host
  CHECK(known_host_key_types(k_file, "backup.example", 2222).empty());
  CHECK(known_host_key_types(k_file, "other.example", 22).empty());  // negated
  CHECK(known_host_key_types(k_file, "other2.example", 22) == Types{"ecdsa-sha2-nistp384"});
  CHECK(known_host_key_types("", "h", 22).empty());
  CHECK(known_host_key_types("|1|bad|bad ssh-rsa X\nh", "h", 22).empty());  // malformed lines are skipped
}

TEST_CASE("the host key method list puts the known types first and keeps only supported ones") {
  const Types all = {"ssh-ed25519",
                     "ecdsa-sha2-nistp256",
                     "ecdsa-sha2-nistp384",
                     "ecdsa-sha2-nistp521",
                     "rsa-sha2-512",
                     "rsa-sha2-256",
                     "ssh-rsa",
                     "ssh-dss"};
  CHECK(host_key_method_preference({}, all) ==
        "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,"
        "ssh-rsa");
  CHECK(host_key_method_preference({"ssh-rsa", "ecdsa-sha2-nistp256"}, all) ==
        "rsa-sha2-512,rsa-sha2-256,ssh-rsa,ecdsa-sha2-nistp256,ssh-ed25519,ecdsa-sha2-nistp384,ecdsa-sha2-"
        "nistp521");
  CHECK(host_key_method_preference({"ssh-dss", "unknown-type"}, all).starts_with("ssh-ed25519,"));
  // libssh2 1.10 has no rsa-sha2-*: they are left out rather than passed to it.
  const Types libssh2_1_10 = {"ecdsa-sha2-nistp256",
                              "ecdsa-sha2-nistp384",
                              "ecdsa-sha2-nistp521",
                              "ssh-ed25519",
                              "ssh-rsa",
                              "ssh-dss"};
  CHECK(host_key_method_preference({"ssh-rsa", "ssh-ed25519"}, libssh2_1_10) ==
        "ssh-rsa,ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521");
  CHECK(host_key_method_preference({}, {}).empty());
}
