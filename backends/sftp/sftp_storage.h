// The sftp:// backend: objects are files under a directory on an SSH host,
// reached with libssh2 over one SSH session per replica.
//
//   sftp://[user[:password]@]host[:port]/absolute/path[?option=value...]
//
// Options (URL query or the replica's settings in walship.toml):
//   key          private key file (default: ssh-agent, then ~/.ssh/id_ed25519,
//                ~/.ssh/id_ecdsa, ~/.ssh/id_rsa); its passphrase is read from
//                $WALSHIP_SSH_PASSPHRASE
//   known-hosts  known_hosts file the host key must be in (default ~/.ssh/known_hosts)
//
// The user defaults to the local user name. An unknown or changed host key is
// an error, never accepted: add the key with `ssh-keyscan -p PORT HOST`.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backends/url.h"
#include "lib/storage/storage.h"

namespace walship {

// The environment variable a key file's passphrase is read from.
constexpr const char* k_ssh_passphrase_env = "WALSHIP_SSH_PASSPHRASE";

struct SftpOptions {
  std::string user;
  std::optional<std::string> password;
  std::string host;
  uint16_t port = 22;
  std::string root;         // absolute, no trailing '/'
  std::string key_file;     // empty: agent, then the default key files
  std::string known_hosts;  // empty: ~/.ssh/known_hosts
};

// Validates a parsed sftp:// URL and its options. Throws UsageError naming the
// (redacted) URL for a missing host, a relative path or an unknown option. Pure
// except for looking up the local user name when the URL has none.
SftpOptions parse_sftp_url(const ParsedUrl& parsed, const std::string& url);

// The options sftp:// takes, with their kinds (key, known-hosts: never empty).
std::span<const OptionSpec> sftp_option_specs();

// The registry's entry point: parse_sftp_url(), then an SftpStorage.
std::unique_ptr<Storage> open_sftp_storage(const ParsedUrl& parsed, const std::string& url);

class SftpStorage : public Storage {
 public:
  // No I/O: the session is opened by the first operation.
  explicit SftpStorage(SftpOptions options);
  ~SftpStorage() override;

  std::string url() const override;
  // "sftp", and how it logged in: the URL's password, the key file, or the
  // agent (named once a connection was made).
  StorageFacts facts() const override;

  // Writes `.<name>.walship-tmp-<random>` beside the object, fsyncs it
  // (fsync@openssh.com) and renames it onto the key (posix-rename@openssh.com
  // with libssh2 >= 1.11; with older libssh2 a plain SFTP rename, and when
  // the key exists it is removed first, so a replaced object is briefly
  // absent — objects are written once, so this is the rare case). Missing
  // directories are created.
  void put(const std::string& key, ByteSource& data) override;

  // Writes and fsyncs a temp file, then renames it with the SFTP v3 RENAME,
  // which OpenSSH implements with link(2)+unlink(2): it fails if the key
  // exists, so exactly one writer wins, here or on another host.
  bool put_if_absent(const std::string& key, ByteSource& data) override;

  bool get(const std::string& key, ByteSink& out, const ByteRange& range = {}) override;

  // Walks the directories under the prefix; temp files, symlinks and other
  // non-regular files are skipped.
  std::vector<ObjectInfo> list(const std::string& prefix) override;

  // Unlinks each key and then removes directories the removal left empty.
  void remove(const std::vector<std::string>& keys) override;

  struct Connection;  // socket, LIBSSH2_SESSION, LIBSSH2_SFTP (sftp_storage.cpp)

 private:
  // The live connection, opened (or reopened after a drop) on demand. Call
  // with m_mutex held.
  Connection& connection();
  // Writes a temp file beside `path` and renames it into place; false when
  // `if_absent` and the key exists.
  bool write_object(const std::string& key, ByteSource& data, bool if_absent);
  // Throws the StorageError for the last libssh2/SFTP failure; a session
  // failure drops the connection so the next operation reconnects.
  [[noreturn]] void fail(const std::string& what);

  std::string path_of(const std::string& key) const { return m_options.root + "/" + key; }
  std::string object_url(const std::string& key) const { return url() + "/" + key; }

  SftpOptions m_options;
  std::mutex m_mutex;  // libssh2 sessions are not thread-safe: one operation at a time
  std::unique_ptr<Connection> m_connection;
  mutable std::mutex m_login_mutex;
  std::string m_login;  // what the last login used: "ssh-agent", a key path, "password"
};

}  // namespace walship
