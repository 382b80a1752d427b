#include "backends/tls_trust.h"

#include <unistd.h>

#include <cstdlib>

namespace walship {

#ifdef WALSHIP_CA_BUNDLE_FILE
// The bundle's bytes, placed in .rodata by the assembler (no generated source
// file, no multi-MiB string literal), followed by a NUL.
__asm__(
    ".pushsection .rodata\n"
    ".balign 16\n"
    ".globl walship_ca_bundle_begin\n"
    ".hidden walship_ca_bundle_begin\n"
    "walship_ca_bundle_begin:\n"
    ".incbin \"" WALSHIP_CA_BUNDLE_FILE
    "\"\n"
    ".globl walship_ca_bundle_end\n"
    ".hidden walship_ca_bundle_end\n"
    "walship_ca_bundle_end:\n"
    ".byte 0\n"
    ".popsection\n");
extern "C" const char walship_ca_bundle_begin[];
extern "C" const char walship_ca_bundle_end[];
#endif

namespace {

// Where distributions keep their bundle (the list Go's crypto/x509 uses).
constexpr const char* k_system_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",                 // Debian, Ubuntu, Arch, Gentoo
    "/etc/pki/tls/certs/ca-bundle.crt",                   // Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",                             // openSUSE
    "/etc/pki/tls/cacert.pem",                            // OpenELEC
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  // CentOS, RHEL 7
    "/etc/ssl/cert.pem",                                  // Alpine
};

}  // namespace

CaChoice choose_ca(const std::function<const char*(const char*)>& get_env,
                   const std::function<bool(const std::string&)>& file_exists, bool have_embedded) {
  for (const char* name : {"CURL_CA_BUNDLE", "SSL_CERT_FILE"}) {
    if (const char* value = get_env(name); value != nullptr && *value != '\0') {
      return {CaSource::explicit_file, value};
    }
  }
  for (const char* path : k_system_bundles) {
    if (file_exists(path)) return {CaSource::system_file, path};
  }
  if (have_embedded) return {CaSource::embedded, ""};
  return {CaSource::curl_default, ""};
}

std::span<const char> embedded_ca_bundle() {
#ifdef WALSHIP_CA_BUNDLE_FILE
  return {walship_ca_bundle_begin, walship_ca_bundle_end};
#else
  return {};
#endif
}

void apply_ca_bundle(CURL* curl) {
  static const CaChoice choice =
      choose_ca([](const char* name) { return std::getenv(name); },
                [](const std::string& path) { return ::access(path.c_str(), R_OK) == 0; },
                !embedded_ca_bundle().empty());
  switch (choice.source) {
    case CaSource::explicit_file:
    case CaSource::system_file: curl_easy_setopt(curl, CURLOPT_CAINFO, choice.path.c_str()); break;
    case CaSource::embedded: {
      const std::span<const char> bundle = embedded_ca_bundle();
      curl_blob blob{const_cast<char*>(bundle.data()), bundle.size(), CURL_BLOB_NOCOPY};
      curl_easy_setopt(curl, CURLOPT_CAINFO, nullptr);  // no file to read besides the blob
      curl_easy_setopt(curl, CURLOPT_CAPATH, nullptr);
      curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &blob);
      break;
    }
    case CaSource::curl_default: break;
  }
}

}  // namespace walship
