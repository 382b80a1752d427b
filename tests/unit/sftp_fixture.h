// Conformance fixture for the sftp:// backend: the same cases as every other
// backend, against a real OpenSSH sshd on 127.0.0.1 (tests/sftp/sshd_server.py:
// throwaway host and user keys; one sshd per process, a fresh directory per
// case). Included by test_backends_conformance.cpp.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>

#include "backends/registry.h"
#include "lib/storage/storage.h"
#include "tests/unit/server_process.h"

namespace walship::test {

class SshdTestServer {
 public:
  SshdTestServer() {
    m_process.start({"python3", std::string(WALSHIP_SOURCE_DIR) + "/tests/sftp/sshd_server.py"}, true);
    std::istringstream line(m_process.first_line());
    std::string word;
    line >> word >> word >> m_address >> m_dir;  // "listening on 127.0.0.1:PORT DIR"
    if (m_dir.empty()) throw std::runtime_error("sshd_server.py: " + m_process.first_line());
  }
  const std::string& address() const { return m_address; }
  const std::string& dir() const { return m_dir; }

 private:
  ServerProcess m_process;
  std::string m_address;
  std::string m_dir;
};

inline SshdTestServer& sshd_test_server() {
  static SshdTestServer server;
  return server;
}

struct SftpBackend {
  SftpBackend() {
    SshdTestServer& sshd = sshd_test_server();
    static std::atomic<int> counter{0};
    m_root = sshd.dir() + "/replicas/case-" + std::to_string(counter.fetch_add(1));
    // The root does not exist yet: the first put must create it.
    storage =
        open_storage("sftp://127.0.0.1:" + sshd.address().substr(sshd.address().find(':') + 1) + m_root +
                     "?key=" + sshd.dir() + "/id_ed25519&known-hosts=" + sshd.dir() + "/known_hosts");
  }
  ~SftpBackend() {
    storage.reset();
    std::error_code ec;
    std::filesystem::remove_all(m_root, ec);
  }
  SftpBackend(const SftpBackend&) = delete;
  SftpBackend& operator=(const SftpBackend&) = delete;

  std::string m_root;
  std::unique_ptr<Storage> storage;
};

}  // namespace walship::test
