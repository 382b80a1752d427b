#include "backends/sftp/sftp_storage.h"

#include <fcntl.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <sstream>
#include <utility>

#include "backends/resolver.h"
#include "backends/sftp/known_hosts.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/percent_encode.h"
#include "lib/util/temp_name.h"
#include "lib/util/user.h"

namespace walship {

namespace {

constexpr size_t k_io_size = size_t{1} << 20;  // bytes per read/write call (libssh2 pipelines them)
constexpr long k_session_timeout_ms = 60'000;  // a blocking libssh2 call that waits longer fails
constexpr int k_connect_timeout_ms = 10'000;

std::once_flag g_libssh2_init;

bool file_exists(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

const char* sftp_status_text(unsigned long code) {
  switch (code) {
    case LIBSSH2_FX_EOF: return "end of file";
    case LIBSSH2_FX_NO_SUCH_FILE: return "no such file or directory";
    case LIBSSH2_FX_PERMISSION_DENIED: return "permission denied";
    case LIBSSH2_FX_FAILURE: return "the server reported a failure";
    case LIBSSH2_FX_OP_UNSUPPORTED: return "operation not supported by the server";
    case LIBSSH2_FX_NO_SUCH_PATH: return "no such path";
    case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "file already exists";
    case LIBSSH2_FX_WRITE_PROTECT: return "write-protected";
    case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: return "no space left on the server";
    case LIBSSH2_FX_QUOTA_EXCEEDED: return "quota exceeded";
    case LIBSSH2_FX_NOT_A_DIRECTORY: return "not a directory";
    default: return "SFTP error";
  }
}

// The knownhost key type flag for a host key type from libssh2_session_hostkey.
int knownhost_key_type(int hostkey_type) {
  switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

const char* hostkey_type_name(int hostkey_type) {
  switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
    default: return "unknown";
  }
}

// Connects a TCP socket with a timeout. Throws a StorageError naming `where`.
UniqueFd connect_socket(const std::string& host, uint16_t port, const std::string& where) {
  const std::vector<ResolvedAddress> addresses = resolve_host(host, port, where, k_connect_timeout_ms);
  int last_error = ECONNREFUSED;
  for (const ResolvedAddress& a : addresses) {
    UniqueFd fd(::socket(a.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      last_error = errno;
      continue;
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.address), a.length) != 0) {
      if (errno != EINPROGRESS) {
        last_error = errno;
        continue;
      }
      pollfd p{fd.get(), POLLOUT, 0};
      const int ready = ::poll(&p, 1, k_connect_timeout_ms);
      int err = ETIMEDOUT;
      socklen_t len = sizeof err;
      if (ready == 1) ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last_error = err;
        continue;
      }
    }
    const int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    return fd;
  }
  throw StorageError(errno_message("unable to connect to " + where, last_error), true);
}

}  // namespace

// Everything one SSH connection owns, released in reverse order.
struct SftpStorage::Connection {
  UniqueFd socket;
  LIBSSH2_SESSION* session = nullptr;
  LIBSSH2_SFTP* sftp = nullptr;
  bool broken = false;  // a session-level failure happened: reconnect before the next use

  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    if (sftp != nullptr) libssh2_sftp_shutdown(sftp);
    if (session != nullptr) {
      libssh2_session_disconnect(session, "walship done");
      libssh2_session_free(session);
    }
  }

  std::string last_error() const {
    char* message = nullptr;
    int length = 0;
    libssh2_session_last_error(session, &message, &length, 0);
    return message != nullptr ? std::string(message, static_cast<size_t>(length)) : "unknown libssh2 error";
  }
};

namespace {

// RAII for an open SFTP file or directory handle.
class SftpHandle {
 public:
  explicit SftpHandle(LIBSSH2_SFTP_HANDLE* handle = nullptr) : m_handle(handle) {}
  ~SftpHandle() {
    if (m_handle != nullptr) libssh2_sftp_close_handle(m_handle);
  }
  SftpHandle(const SftpHandle&) = delete;
  SftpHandle& operator=(const SftpHandle&) = delete;
  LIBSSH2_SFTP_HANDLE* get() const { return m_handle; }
  void reset(LIBSSH2_SFTP_HANDLE* handle) {
    close();
    m_handle = handle;
  }
  explicit operator bool() const { return m_handle != nullptr; }
  // Closes now and reports whether the server accepted the close.
  bool close() {
    LIBSSH2_SFTP_HANDLE* h = std::exchange(m_handle, nullptr);
    return h == nullptr || libssh2_sftp_close_handle(h) == 0;
  }

 private:
  LIBSSH2_SFTP_HANDLE* m_handle;
};

class Agent {
 public:
  explicit Agent(LIBSSH2_SESSION* session) : m_agent(libssh2_agent_init(session)) {}
  ~Agent() {
    if (m_agent == nullptr) return;
    if (m_connected) libssh2_agent_disconnect(m_agent);
    libssh2_agent_free(m_agent);
  }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Tries every identity the agent holds; true once one is accepted.
  bool authenticate(const std::string& user) {
    if (m_agent == nullptr || libssh2_agent_connect(m_agent) != 0) return false;
    m_connected = true;
    if (libssh2_agent_list_identities(m_agent) != 0) return false;
    libssh2_agent_publickey* previous = nullptr;
    libssh2_agent_publickey* identity = nullptr;
    while (libssh2_agent_get_identity(m_agent, &identity, previous) == 0) {
      if (libssh2_agent_userauth(m_agent, user.c_str(), identity) == 0) return true;
      previous = identity;
    }
    return false;
  }

 private:
  LIBSSH2_AGENT* m_agent;
  bool m_connected = false;
};

class KnownHosts {
 public:
  explicit KnownHosts(LIBSSH2_SESSION* session) : m_hosts(libssh2_knownhost_init(session)) {}
  ~KnownHosts() {
    if (m_hosts != nullptr) libssh2_knownhost_free(m_hosts);
  }
  KnownHosts(const KnownHosts&) = delete;
  KnownHosts& operator=(const KnownHosts&) = delete;
  LIBSSH2_KNOWNHOSTS* get() const { return m_hosts; }

 private:
  LIBSSH2_KNOWNHOSTS* m_hosts;
};

}  // namespace

std::span<const OptionSpec> sftp_option_specs() {
  static constexpr OptionSpec k_options[] = {{"key", OptionKind::text}, {"known-hosts", OptionKind::text}};
  return k_options;
}

SftpOptions parse_sftp_url(const ParsedUrl& parsed, const std::string& url) {
  const std::string shown = redact_url(url);
  SftpOptions options;
  if (parsed.host.empty()) {
    throw UsageError("invalid replica URL '" + shown + "': no host; use sftp://user@host/absolute/path");
  }
  options.host = parsed.host;
  options.port = parsed.port.value_or(22);
  options.password = parsed.password;
  options.user = parsed.user;
  if (options.user.empty()) {
    options.user = user_name();
    if (options.user.empty()) {
      throw UsageError("invalid replica URL '" + shown + "': no user; use sftp://user@host/absolute/path");
    }
  }
  std::string root = parsed.path;
  while (root.size() > 1 && root.ends_with('/')) root.pop_back();
  if (!root.starts_with('/') || root == "/") {
    throw UsageError(
        "invalid replica URL '" + shown +
        "': the path must be an absolute directory below '/'; use sftp://user@host/absolute/path");
  }
  if (!is_valid_object_key(root.substr(1))) {
    throw UsageError("invalid replica URL '" + shown + "': the path has an empty, '.' or '..' segment");
  }
  options.root = root;
  for (const auto& [name, value] : parsed.query) {
    if (name == "key" || name == "known-hosts") check_option_value(name, value, OptionKind::text, shown);
    if (name == "key") {
      options.key_file = value;
    } else if (name == "known-hosts") {
      options.known_hosts = value;
    } else {
      throw UsageError("unknown option '" + name + "' for replica '" + shown +
                       "': sftp:// takes key and known-hosts");
    }
  }
  return options;
}

std::unique_ptr<Storage> open_sftp_storage(const ParsedUrl& parsed, const std::string& url) {
  return std::make_unique<SftpStorage>(parse_sftp_url(parsed, url));
}

SftpStorage::SftpStorage(SftpOptions options) : m_options(std::move(options)) {
  std::call_once(g_libssh2_init, [] { libssh2_init(0); });
  if (!m_options.key_file.empty() && !file_exists(m_options.key_file)) {
    throw UsageError(
        errno_message("unable to read SSH key '" + m_options.key_file + "' for '" + url() + "'", errno));
  }
}

SftpStorage::~SftpStorage() = default;

StorageFacts SftpStorage::facts() const {
  std::string how;
  if (m_options.password) {
    how = "the password in the URL";
  } else {
    std::lock_guard lock(m_login_mutex);
    const std::string& used = !m_login.empty() ? m_login : m_options.key_file;
    how = used.empty()          ? "ssh-agent or ~/.ssh/id_ed25519, id_ecdsa, id_rsa"
          : used == "ssh-agent" ? "ssh-agent"
                                : "key " + used;
  }
  return {"sftp", how + " as user '" + m_options.user + "'", 0};
}

std::string SftpStorage::url() const {
  std::string host =
      m_options.host.find(':') != std::string::npos ? "[" + m_options.host + "]" : m_options.host;
  if (m_options.port != 22) host += ":" + std::to_string(m_options.port);
  return "sftp://" + percent_encode(m_options.user) + "@" + host + percent_encode(m_options.root, "/");
}

SftpStorage::Connection& SftpStorage::connection() {
  if (m_connection && !m_connection->broken) return *m_connection;
  if (m_connection) {
    m_connection.reset();
    if (log_enabled(LogLevel::info)) log(LogLevel::info, "reconnecting", {{"replica", url()}});
  }
  const std::string where =
      "'" + m_options.host + ":" + std::to_string(m_options.port) + "' for '" + url() + "'";
  auto c = std::make_unique<Connection>();
  c->socket = connect_socket(m_options.host, m_options.port, where);
  c->session = libssh2_session_init();
  if (c->session == nullptr) throw StorageError("unable to start an SSH session to " + where, false);
  libssh2_session_set_blocking(c->session, 1);
  libssh2_session_set_timeout(c->session, k_session_timeout_ms);
  // Ask for a host key of a type known_hosts holds for this host, as OpenSSH does.
  const std::string known_hosts =
      m_options.known_hosts.empty() ? home_dir() + "/.ssh/known_hosts" : m_options.known_hosts;
  {
    std::ifstream in(known_hosts);
    std::stringstream text;
    if (in) text << in.rdbuf();
    std::vector<std::string> supported;
    const char** algorithms = nullptr;
    const int count = libssh2_session_supported_algs(c->session, LIBSSH2_METHOD_HOSTKEY, &algorithms);
    if (count > 0) {
      supported.assign(algorithms, algorithms + count);
      libssh2_free(c->session, algorithms);
    }
    const std::string methods = host_key_method_preference(
        known_host_key_types(text.str(), m_options.host, m_options.port), supported);
    if (!methods.empty()) libssh2_session_method_pref(c->session, LIBSSH2_METHOD_HOSTKEY, methods.c_str());
  }
  if (libssh2_session_handshake(c->session, c->socket.get()) != 0) {
    throw StorageError("unable to start an SSH session with " + where + ": " + c->last_error(), true);
  }

  // The host key must be known: an unknown or changed key is never accepted.
  size_t key_length = 0;
  int key_type = 0;
  const char* host_key = libssh2_session_hostkey(c->session, &key_length, &key_type);
  if (host_key == nullptr) throw StorageError("unable to read the host key of " + where, true);
  KnownHosts hosts(c->session);
  if (hosts.get() == nullptr || !file_exists(known_hosts) ||
      libssh2_knownhost_readfile(hosts.get(), known_hosts.c_str(), LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
    throw StorageError("unable to verify the host key of " + where + ": cannot read known hosts file '" +
                           known_hosts + "'; add the host with ssh-keyscan -p " +
                           std::to_string(m_options.port) + " " + m_options.host + " >> " + known_hosts +
                           " (after checking its fingerprint)",
                       false);
  }
  libssh2_knownhost* entry = nullptr;
  const int check = libssh2_knownhost_checkp(
      hosts.get(), m_options.host.c_str(), m_options.port, host_key, key_length,
      LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | knownhost_key_type(key_type), &entry);
  if (check == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
    throw StorageError("host key verification failed for " + where + ": the " + hostkey_type_name(key_type) +
                           " key differs from the one in '" + known_hosts +
                           "' (the host was reinstalled, or someone is intercepting the connection); "
                           "refusing to connect",
                       false);
  }
  if (check != LIBSSH2_KNOWNHOST_CHECK_MATCH) {
    throw StorageError("host key verification failed for " + where + ": no " + hostkey_type_name(key_type) +
                           " key for it in '" + known_hosts + "'; add it with ssh-keyscan -p " +
                           std::to_string(m_options.port) + " " + m_options.host + " >> " + known_hosts +
                           " (after checking its fingerprint)",
                       false);
  }

  // Authentication: password from the URL, else the key given, else the
  // agent and the usual key files.
  const std::string& user = m_options.user;
  std::vector<std::string> tried;
  bool authenticated = false;
  if (m_options.password) {
    tried.push_back("password");
    authenticated =
        libssh2_userauth_password_ex(c->session, user.c_str(), static_cast<unsigned>(user.size()),
                                     m_options.password->c_str(),
                                     static_cast<unsigned>(m_options.password->size()), nullptr) == 0;
  } else {
    const char* env_passphrase = std::getenv(k_ssh_passphrase_env);
    const std::string passphrase = env_passphrase != nullptr ? env_passphrase : "";
    auto try_key = [&](const std::string& path) {
      tried.push_back(path);
      return libssh2_userauth_publickey_fromfile_ex(c->session, user.c_str(),
                                                    static_cast<unsigned>(user.size()), nullptr, path.c_str(),
                                                    passphrase.c_str()) == 0;
    };
    if (!m_options.key_file.empty()) {
      authenticated = try_key(m_options.key_file);
    } else {
      if (std::getenv("SSH_AUTH_SOCK") != nullptr) {
        tried.push_back("ssh-agent");
        Agent agent(c->session);
        authenticated = agent.authenticate(user);
      }
      for (const char* name : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
        if (authenticated) break;
        const std::string path = home_dir() + "/.ssh/" + name;
        if (file_exists(path)) authenticated = try_key(path);
      }
    }
  }
  if (authenticated) {
    std::lock_guard login_lock(m_login_mutex);
    m_login = tried.back();
  }
  if (!authenticated) {
    std::string list;
    for (const std::string& t : tried) list += (list.empty() ? "" : ", ") + t;
    if (list.empty()) list = "nothing: no ssh-agent and no ~/.ssh/id_ed25519, id_ecdsa or id_rsa";
    throw StorageError("unable to log in to " + where + " as '" + user + "' (tried " + list +
                           "): " + c->last_error() + "; check the key (key= option, passphrase in $" +
                           k_ssh_passphrase_env + ") and the server's authorized_keys",
                       false);
  }

  c->sftp = libssh2_sftp_init(c->session);
  if (c->sftp == nullptr) {
    throw StorageError("unable to start SFTP on " + where + ": " + c->last_error(), true);
  }
  m_connection = std::move(c);
  return *m_connection;
}

void SftpStorage::fail(const std::string& what) {
  if (!m_connection) throw StorageError(what + ": not connected", true);
  const int code = libssh2_session_last_errno(m_connection->session);
  if (code == LIBSSH2_ERROR_SFTP_PROTOCOL) {
    const unsigned long status = libssh2_sftp_last_error(m_connection->sftp);
    const bool transient = status == LIBSSH2_FX_NO_CONNECTION || status == LIBSSH2_FX_CONNECTION_LOST ||
                           status == LIBSSH2_FX_FAILURE;
    throw StorageError(what + ": " + sftp_status_text(status), transient);
  }
  // The session itself failed (socket closed, timeout, protocol error): it
  // cannot be used again. The next operation drops it and reconnects; not
  // now, because handles still open in the caller's frames close on it
  // while this exception unwinds (libssh2 frees them even on a dead session).
  const std::string message = m_connection->last_error();
  m_connection->broken = true;
  throw StorageError(what + ": " + message + " (the SSH connection was dropped; reconnecting on retry)",
                     true);
}

namespace {

// The SFTP status of the last failed call, or -1 when the session failed.
long sftp_status(LIBSSH2_SESSION* session, LIBSSH2_SFTP* sftp) {
  if (libssh2_session_last_errno(session) != LIBSSH2_ERROR_SFTP_PROTOCOL) return -1;
  return static_cast<long>(libssh2_sftp_last_error(sftp));
}

}  // namespace

bool SftpStorage::write_object(const std::string& key, ByteSource& data, bool if_absent) {
  check_object_key(key, url());
  std::lock_guard lock(m_mutex);
  const std::string what = "unable to write '" + object_url(key) + "'";
  Connection& c = connection();
  const std::string path = path_of(key);
  const std::string dir = dir_name(path);
  const std::string temp = temp_path_for(path);

  auto open_temp = [&]() {
    return libssh2_sftp_open_ex(c.sftp, temp.c_str(), static_cast<unsigned>(temp.size()),
                                LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL, 0644,
                                LIBSSH2_SFTP_OPENFILE);
  };
  SftpHandle handle(open_temp());
  if (!handle && sftp_status(c.session, c.sftp) == static_cast<long>(LIBSSH2_FX_NO_SUCH_FILE)) {
    // mkdir -p below the root (the root too, if it is missing).
    std::string partial;
    size_t pos = 0;
    while (pos != std::string::npos) {
      const size_t next = dir.find('/', pos + 1);
      partial = dir.substr(0, next);
      pos = next;
      if (partial.empty()) continue;
      LIBSSH2_SFTP_ATTRIBUTES attrs{};
      if (libssh2_sftp_stat_ex(c.sftp, partial.c_str(), static_cast<unsigned>(partial.size()),
                               LIBSSH2_SFTP_STAT, &attrs) == 0) {
        continue;
      }
      if (sftp_status(c.session, c.sftp) < 0) fail(what);
      if (libssh2_sftp_mkdir_ex(c.sftp, partial.c_str(), static_cast<unsigned>(partial.size()), 0755) != 0) {
        // Another writer may have created it in between.
        if (sftp_status(c.session, c.sftp) < 0) fail(what);
        if (libssh2_sftp_stat_ex(c.sftp, partial.c_str(), static_cast<unsigned>(partial.size()),
                                 LIBSSH2_SFTP_STAT, &attrs) != 0) {
          fail(what + ": unable to create directory '" + partial + "'");
        }
      }
    }
    handle.reset(open_temp());
  }
  if (!handle) fail(what);

  // From here on, a failure removes the temp file (when the session still works).
  bool keep_temp = false;
  struct TempGuard {
    SftpStorage* self;
    const std::string& temp;
    bool& keep;
    ~TempGuard() {
      if (keep || !self->m_connection || self->m_connection->broken) return;
      libssh2_sftp_unlink_ex(self->m_connection->sftp, temp.c_str(), static_cast<unsigned>(temp.size()));
    }
  } guard{this, temp, keep_temp};

  const uint64_t expected = data.size();
  uint64_t written = 0;
  std::vector<char> buffer(k_io_size);
  for (;;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), expected - written));
    const size_t got =
        want == 0 ? 0 : data.read(std::as_writable_bytes(std::span<char>(buffer.data(), want)));
    if (got == 0) break;
    size_t done = 0;
    while (done < got) {
      const ssize_t n = libssh2_sftp_write(handle.get(), buffer.data() + done, got - done);
      if (n < 0) fail(what);
      done += static_cast<size_t>(n);
    }
    written += got;
  }
  if (written != expected) {
    throw Failure(what + ": the source ended after " + std::to_string(written) + " bytes, expected " +
                  std::to_string(expected));
  }
  if (libssh2_sftp_fsync(handle.get()) != 0) {
    // Servers without fsync@openssh.com: the rename is as durable as it gets there.
    if (sftp_status(c.session, c.sftp) != static_cast<long>(LIBSSH2_FX_OP_UNSUPPORTED))
      fail(what + " (fsync)");
  }
  if (!handle.close()) fail(what + " (close)");

  const auto rename = [&](long flags) {
    return libssh2_sftp_rename_ex(c.sftp, temp.c_str(), static_cast<unsigned>(temp.size()), path.c_str(),
                                  static_cast<unsigned>(path.size()), flags);
  };
  if (if_absent) {
    // SFTP v3 RENAME never replaces (OpenSSH: link + unlink).
    if (rename(0) == 0) {
      keep_temp = true;
      return true;
    }
    if (sftp_status(c.session, c.sftp) < 0) fail(what);
    LIBSSH2_SFTP_ATTRIBUTES attrs{};
    if (libssh2_sftp_stat_ex(c.sftp, path.c_str(), static_cast<unsigned>(path.size()), LIBSSH2_SFTP_LSTAT,
                             &attrs) == 0) {
      return false;  // someone else's object is there
    }
    fail(what + " (rename)");
  }
#if LIBSSH2_VERSION_NUM >= 0x010b00
  if (libssh2_sftp_posix_rename_ex(c.sftp, temp.c_str(), temp.size(), path.c_str(), path.size()) == 0) {
    keep_temp = true;
    return true;
  }
  if (sftp_status(c.session, c.sftp) != static_cast<long>(LIBSSH2_FX_OP_UNSUPPORTED))
    fail(what + " (rename)");
#endif
  if (rename(LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC | LIBSSH2_SFTP_RENAME_NATIVE) == 0) {
    keep_temp = true;
    return true;
  }
  if (sftp_status(c.session, c.sftp) < 0) fail(what);
  // The key exists and this server's rename does not replace: remove, then rename.
  libssh2_sftp_unlink_ex(c.sftp, path.c_str(), static_cast<unsigned>(path.size()));
  if (rename(0) != 0) fail(what + " (rename)");
  keep_temp = true;
  return true;
}

void SftpStorage::put(const std::string& key, ByteSource& data) { write_object(key, data, false); }

bool SftpStorage::put_if_absent(const std::string& key, ByteSource& data) {
  return write_object(key, data, true);
}

bool SftpStorage::get(const std::string& key, ByteSink& out, const ByteRange& range) {
  check_object_key(key, url());
  std::lock_guard lock(m_mutex);
  const std::string what = "unable to read '" + object_url(key) + "'";
  Connection& c = connection();
  const std::string path = path_of(key);
  SftpHandle handle(libssh2_sftp_open_ex(c.sftp, path.c_str(), static_cast<unsigned>(path.size()),
                                         LIBSSH2_FXF_READ, 0, LIBSSH2_SFTP_OPENFILE));
  if (!handle) {
    const long status = sftp_status(c.session, c.sftp);
    if (status == static_cast<long>(LIBSSH2_FX_NO_SUCH_FILE) ||
        status == static_cast<long>(LIBSSH2_FX_NO_SUCH_PATH) ||
        status == static_cast<long>(LIBSSH2_FX_NOT_A_DIRECTORY)) {
      return false;
    }
    fail(what);
  }
  LIBSSH2_SFTP_ATTRIBUTES attrs{};
  if (libssh2_sftp_fstat_ex(handle.get(), &attrs, 0) != 0) fail(what);
  if (!(attrs.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) || !LIBSSH2_SFTP_S_ISREG(attrs.permissions))
    return false;
  if (is_temp_name(base_name(path))) return false;
  const uint64_t size = (attrs.flags & LIBSSH2_SFTP_ATTR_SIZE) ? attrs.filesize : 0;
  if (range.offset >= size) return true;
  uint64_t left = size - range.offset;
  if (range.length) left = std::min(left, *range.length);
  if (left == 0) return true;
  libssh2_sftp_seek64(handle.get(), range.offset);
  std::vector<char> buffer(static_cast<size_t>(std::min<uint64_t>(k_io_size, left)));
  while (left > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), left));
    const ssize_t n = libssh2_sftp_read(handle.get(), buffer.data(), want);
    if (n < 0) fail(what);
    if (n == 0) break;  // the file shrank: objects never do, so someone else's doing
    out.write(std::as_bytes(std::span<const char>(buffer.data(), static_cast<size_t>(n))));
    left -= static_cast<uint64_t>(n);
  }
  return true;
}

std::vector<ObjectInfo> SftpStorage::list(const std::string& prefix) {
  std::lock_guard lock(m_mutex);
  const std::string what = "unable to list '" + url() + (prefix.empty() ? "" : "/" + prefix) + "'";
  Connection& c = connection();
  std::vector<ObjectInfo> out;
  // Start at the deepest directory the prefix names in full.
  const size_t slash = prefix.rfind('/');
  const std::string start = slash == std::string::npos ? "" : prefix.substr(0, slash + 1);
  std::vector<std::string> pending = {start};  // key prefixes of directories, "" or ending in '/'
  std::vector<char> name(4096);
  while (!pending.empty()) {
    const std::string dir_key = std::move(pending.back());
    pending.pop_back();
    std::string dir = m_options.root + (dir_key.empty() ? "" : "/" + dir_key.substr(0, dir_key.size() - 1));
    SftpHandle handle(libssh2_sftp_open_ex(c.sftp, dir.c_str(), static_cast<unsigned>(dir.size()), 0, 0,
                                           LIBSSH2_SFTP_OPENDIR));
    if (!handle) {
      const long status = sftp_status(c.session, c.sftp);
      if (status == static_cast<long>(LIBSSH2_FX_NO_SUCH_FILE) ||
          status == static_cast<long>(LIBSSH2_FX_NO_SUCH_PATH) ||
          status == static_cast<long>(LIBSSH2_FX_NOT_A_DIRECTORY)) {
        continue;  // no such directory: nothing below it
      }
      if (status == static_cast<long>(LIBSSH2_FX_FAILURE) && !dir_key.empty()) continue;  // a file, not a dir
      fail(what);
    }
    for (;;) {
      LIBSSH2_SFTP_ATTRIBUTES attrs{};
      const int n = libssh2_sftp_readdir_ex(handle.get(), name.data(), name.size(), nullptr, 0, &attrs);
      if (n < 0) fail(what);
      if (n == 0) break;
      const std::string entry(name.data(), static_cast<size_t>(n));
      if (entry == "." || entry == ".." || is_temp_name(entry)) continue;
      const std::string key = dir_key + entry;
      if (!(attrs.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS)) continue;
      if (LIBSSH2_SFTP_S_ISDIR(attrs.permissions)) {
        const std::string sub = key + "/";
        // Descend only where keys with the prefix can be.
        if (sub.starts_with(prefix) || prefix.starts_with(sub)) pending.push_back(sub);
      } else if (LIBSSH2_SFTP_S_ISREG(attrs.permissions) && key.starts_with(prefix) &&
                 is_valid_object_key(key)) {
        out.push_back({key, (attrs.flags & LIBSSH2_SFTP_ATTR_SIZE) ? attrs.filesize : 0});
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

void SftpStorage::remove(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) check_object_key(key, url());
  std::lock_guard lock(m_mutex);
  if (keys.empty()) return;
  Connection& c = connection();
  for (const std::string& key : keys) {
    const std::string what = "unable to remove '" + object_url(key) + "'";
    const std::string path = path_of(key);
    if (libssh2_sftp_unlink_ex(c.sftp, path.c_str(), static_cast<unsigned>(path.size())) != 0) {
      const long status = sftp_status(c.session, c.sftp);
      if (status == static_cast<long>(LIBSSH2_FX_NO_SUCH_FILE) ||
          status == static_cast<long>(LIBSSH2_FX_NO_SUCH_PATH) ||
          status == static_cast<long>(LIBSSH2_FX_NOT_A_DIRECTORY)) {
        continue;
      }
      fail(what);
    }
    // Remove the directories this left empty, up to (never including) the root.
    std::string dir = dir_name(path);
    while (dir.size() > m_options.root.size() && dir.starts_with(m_options.root + "/")) {
      if (libssh2_sftp_rmdir_ex(c.sftp, dir.c_str(), static_cast<unsigned>(dir.size())) != 0) {
        if (sftp_status(c.session, c.sftp) < 0) fail(what);
        break;  // not empty (or not ours to remove): stop here
      }
      dir = dir_name(dir);
    }
  }
}

}  // namespace walship
