#include <ares.h>
#include <curl/curl.h>
#include <libssh2.h>
#include <mbedtls/version.h>
#include <sqlite3.h>
#include <zstd.h>

#include <cstdio>

#include "cmd/commands.h"

namespace walship::cmd {

std::string version_text() {
  char mbedtls[32] = "";
  mbedtls_version_get_string(mbedtls);
  return std::string("walship ") + WALSHIP_VERSION + " (SQLite " + sqlite3_libversion() + ", zstd " +
         ZSTD_versionString() + ", libcurl " + curl_version_info(CURLVERSION_NOW)->version + ", mbedTLS " +
         mbedtls + ", libssh2 " + libssh2_version(0) + ", c-ares " + ares_version(nullptr) +
#ifdef WALSHIP_STATIC_BUILD
         "; static" +
#endif
         ")";
}

void add_version_command(CLI::App& app, Runner& run) {
  CLI::App* sub = app.add_subcommand("version", "Print the version of walship and its libraries");
  sub->callback([&run] {
    run = [] {
      std::printf("%s\n", version_text().c_str());
      return 0;
    };
  });
}

}  // namespace walship::cmd
