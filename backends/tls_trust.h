// Which CA certificates libcurl checks servers against. A static walship may
// run where the system has no CA bundle at all (a FROM scratch image, an
// empty root): it then falls back to Debian's ca-certificates bundle,
// compiled in by the static build.
#pragma once

#include <curl/curl.h>

#include <functional>
#include <span>
#include <string>

namespace walship {

enum class CaSource {
  explicit_file,  // $CURL_CA_BUNDLE or $SSL_CERT_FILE
  system_file,    // the first bundle of the usual distribution paths that exists
  embedded,       // the compiled-in bundle
  curl_default,   // none of them: whatever libcurl was built with
};

struct CaChoice {
  CaSource source = CaSource::curl_default;
  std::string path;  // for the two file sources
};

// Pure: the environment and the filesystem are injected.
CaChoice choose_ca(const std::function<const char*(const char*)>& get_env,
                   const std::function<bool(const std::string&)>& file_exists, bool have_embedded);

// The compiled-in PEM bundle; empty when the build has none (the normal build
// uses the system's).
std::span<const char> embedded_ca_bundle();

// Sets CURLOPT_CAINFO, or CURLOPT_CAINFO_BLOB for the compiled-in bundle, on
// a handle, from choose_ca() over the real environment (looked up once).
void apply_ca_bundle(CURL* curl);

}  // namespace walship
