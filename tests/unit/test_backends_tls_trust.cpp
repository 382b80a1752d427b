#include <doctest.h>

#include <map>
#include <set>

#include "backends/tls_trust.h"

using namespace walship;

namespace {

CaChoice choose(const std::map<std::string, std::string>& env, const std::set<std::string>& files,
                bool embedded) {
  return choose_ca(
      [&](const char* name) -> const char* {
        const auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
      },
      [&](const std::string& path) { return files.contains(path); }, embedded);
}

}  // namespace

TEST_CASE("an explicit CA bundle from the environment wins") {
  const CaChoice c = choose({{"SSL_CERT_FILE", "/my/ca.pem"}}, {"/etc/ssl/certs/ca-certificates.crt"}, true);
  CHECK(c.source == CaSource::explicit_file);
  CHECK(c.path == "/my/ca.pem");
  CHECK(choose({{"CURL_CA_BUNDLE", "/a"}, {"SSL_CERT_FILE", "/b"}}, {}, true).path == "/a");
  CHECK(choose({{"SSL_CERT_FILE", ""}}, {}, false).source == CaSource::curl_default);
}

TEST_CASE("the system's bundle is used when it exists, the compiled-in one only when none does") {
  CHECK(choose({}, {"/etc/ssl/certs/ca-certificates.crt"}, true).path ==
        "/etc/ssl/certs/ca-certificates.crt");
  const CaChoice rhel = choose({}, {"/etc/pki/tls/certs/ca-bundle.crt"}, true);
  CHECK(rhel.source == CaSource::system_file);
  CHECK(rhel.path == "/etc/pki/tls/certs/ca-bundle.crt");
  CHECK(choose({}, {}, true).source == CaSource::embedded);
  CHECK(choose({}, {}, false).source == CaSource::curl_default);
}
