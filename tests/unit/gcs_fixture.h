// Conformance fixtures for the gs:// backend: the same cases as every other
// backend, against tests/gcs_server (one server per process, a fresh prefix
// per case), once through the service-account JWT path and once through
// STORAGE_EMULATOR_HOST. Included by test_backends_conformance.cpp.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "backends/registry.h"
#include "lib/storage/storage.h"
#include "tests/unit/server_process.h"

namespace walship::test {

class GcsTestServer {
 public:
  explicit GcsTestServer(bool auth) {
    std::string pattern = (std::filesystem::temp_directory_path() / "walship-gcs-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    m_dir = pattern;
    std::vector<std::string> argv = {
        "python3",     std::string(WALSHIP_SOURCE_DIR) + "/tests/gcs_server/gcs_server.py",
        "--bucket",    "walship-test",
        "--page-size", "3"};
    if (auth) {
      argv.insert(argv.end(), {"--auth", "--credentials-dir", m_dir});
    }
    m_process.start(argv, true);
    m_address = m_process.first_line().substr(m_process.first_line().rfind(' ') + 1);
  }
  ~GcsTestServer() {
    m_process.stop();
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
  }
  // "127.0.0.1:port"
  const std::string& address() const { return m_address; }
  std::string credentials_file() const { return m_dir + "/service-account.json"; }
  // A prefix no other case uses.
  static std::string unique_prefix() {
    static std::atomic<int> counter{0};
    return "case-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  }

 private:
  ServerProcess m_process;
  std::string m_dir;
  std::string m_address;
};

inline GcsTestServer& gcs_jwt_server() {
  static GcsTestServer server(true);
  return server;
}

inline GcsTestServer& gcs_emulator_server() {
  static GcsTestServer server(false);
  return server;
}

// Service-account JWT auth; small resumable chunks so the large-object case
// goes through a resumable session of many chunks.
struct GcsJwtBackend {
  std::unique_ptr<Storage> storage =
      open_storage("gs://walship-test/" + GcsTestServer::unique_prefix() + "/db?endpoint=http://" +
                   gcs_jwt_server().address() + "&credentials-file=" + gcs_jwt_server().credentials_file() +
                   "&resumable-threshold=1048576&upload-chunk-size=262144");
};

// STORAGE_EMULATOR_HOST, no auth, media uploads only.
struct GcsEmulatorBackend {
  static std::unique_ptr<Storage> open() {
    const std::string address = gcs_emulator_server().address();
    ::setenv("STORAGE_EMULATOR_HOST", address.c_str(), 1);
    auto storage = open_storage("gs://walship-test/" + GcsTestServer::unique_prefix());
    ::unsetenv("STORAGE_EMULATOR_HOST");
    return storage;
  }
  std::unique_ptr<Storage> storage = open();
};

}  // namespace walship::test
