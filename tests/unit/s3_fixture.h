// Conformance fixtures for the s3:// backend: the same cases as every other
// backend, against s3rver (tests/s3/s3rver_server.js: the s3rver npm package
// with SigV4 verification, conditional writes and AbortMultipartUpload added;
// one server per process in a throwaway directory, a fresh prefix per case).
// Three ways in: path-style with conditional writes, virtual-hosted
// (bucket.s3.localhost) with a session token, and a server that ignores
// If-None-Match, where put_if_absent falls back to check-then-put. Included by
// test_backends_conformance.cpp.
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

class S3TestServer {
 public:
  explicit S3TestServer(bool conditional_writes, const std::string& session_token = "") {
    std::string pattern = (std::filesystem::temp_directory_path() / "walship-s3-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    m_dir = pattern;
    std::vector<std::string> argv = {"node",
                                     std::string(WALSHIP_SOURCE_DIR) + "/tests/s3/s3rver_server.js",
                                     "--directory",
                                     m_dir,
                                     "--bucket",
                                     "walship-test",
                                     "--access-key-id",
                                     "AKIDWALSHIPTEST",
                                     "--secret-access-key",
                                     "walship/test+secret"};
    if (!conditional_writes) argv.push_back("--no-conditional-writes");
    if (!session_token.empty()) argv.insert(argv.end(), {"--session-token", session_token});
    m_process.start(argv, true);
    m_address = m_process.first_line().substr(m_process.first_line().rfind(' ') + 1);
    m_port = m_address.substr(m_address.rfind(':') + 1);
  }
  ~S3TestServer() {
    m_process.stop();
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
  }
  // "127.0.0.1:port"
  const std::string& address() const { return m_address; }
  const std::string& port() const { return m_port; }
  const std::string& dir() const { return m_dir; }
  // A prefix no other case uses.
  static std::string unique_prefix() {
    static std::atomic<int> counter{0};
    return "case-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  }
  static constexpr const char* keys =
      "access-key-id=AKIDWALSHIPTEST&secret-access-key=walship%2Ftest%2Bsecret";

 private:
  ServerProcess m_process;
  std::string m_dir;
  std::string m_address;
  std::string m_port;
};

inline S3TestServer& s3_server() {
  static S3TestServer server(true);
  return server;
}

inline S3TestServer& s3_token_server() {
  static S3TestServer server(true, "walship-session-token");
  return server;
}

inline S3TestServer& s3_unconditional_server() {
  static S3TestServer server(false);
  return server;
}

// Path-style against 127.0.0.1; a small multipart threshold so the
// large-object case goes through a multipart upload of several parts.
struct S3PathStyleBackend {
  std::unique_ptr<Storage> storage = open_storage(
      "s3://walship-test/" + S3TestServer::unique_prefix() + "/db?endpoint=http://" + s3_server().address() +
      "&" + S3TestServer::keys + "&multipart-threshold=5242880&part-size=5242880");
};

// Virtual-hosted (walship-test.s3.localhost, which resolves to 127.0.0.1)
// with a session token; single PUTs only.
struct S3VirtualHostBackend {
  std::unique_ptr<Storage> storage =
      open_storage("s3://walship-test/" + S3TestServer::unique_prefix() + "?endpoint=http://s3.localhost:" +
                   s3_token_server().port() + "&path-style=false&region=eu-west-3&" + S3TestServer::keys +
                   "&session-token=walship-session-token&multipart-threshold=1000000000");
};

// A store that ignores If-None-Match: the fallback, which is not atomic (the
// conformance suite skips the race for it).
struct S3NoConditionalBackend {
  std::unique_ptr<Storage> storage =
      open_storage("s3://walship-test/" + S3TestServer::unique_prefix() + "?endpoint=http://" +
                   s3_unconditional_server().address() + "&" + S3TestServer::keys);
};

}  // namespace walship::test
