#include "lib/replica/local_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "lib/format/keys.h"
#include "lib/util/byte_stream.h"
#include "lib/util/endian.h"
#include "lib/util/error.h"
#include "lib/util/log.h"

namespace walship {

namespace {

constexpr std::string_view k_state_magic = "walship-state 1";

std::string hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

std::optional<uint64_t> parse_hex(const std::string& text) {
  if (text.empty() || text.size() > 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

void write_file_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) throw Failure("unable to write '" + tmp + "': " + std::strerror(errno));
    pwrite_all(fd.get(), as_bytes(content), 0, tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    throw Failure("unable to rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  }
}

}  // namespace

bool ShippedState::consistent() const {
  if (page_hashes.size() != db_pages) return false;
  uint64_t sum = 0;
  for (uint64_t h : page_hashes) sum ^= h;
  return sum == checksum;
}

LocalStateStore::LocalStateStore(std::string dir, const std::string& replica_url) : m_dir(std::move(dir)) {
  m_replica_url = replica_url;
  const std::string id = format::txid_hex(XXH3_64bits(replica_url.data(), replica_url.size()));
  m_state_path = m_dir + "/" + id + ".state";
  m_pages_path = m_dir + "/" + id + ".pages";
}

std::optional<ShippedState> LocalStateStore::load() const {
  std::ifstream in(m_state_path);
  if (!in) return std::nullopt;
  std::string line;
  if (!std::getline(in, line) || line != k_state_magic) return std::nullopt;
  std::map<std::string, std::string> fields;
  while (std::getline(in, line)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) return std::nullopt;
    fields[line.substr(0, space)] = line.substr(space + 1);
  }
  auto hex = [&](const char* name) { return parse_hex(fields[name]); };
  ShippedState state;
  const auto page_size = hex("page_size"), txid = hex("txid"), checksum = hex("checksum"),
             db_pages = hex("db_pages"), salt1 = hex("wal_salt1"), salt2 = hex("wal_salt2"),
             seq = hex("wal_checkpoint_seq"), offset = hex("wal_offset"), sum0 = hex("wal_checksum0"),
             sum1 = hex("wal_checksum1");
  if (fields["replica"] != m_replica_url || !page_size || !txid || !checksum || !db_pages || !salt1 ||
      !salt2 || !seq || !offset || !sum0 || !sum1) {
    return std::nullopt;
  }
  state.page_size = static_cast<uint32_t>(*page_size);
  state.txid = *txid;
  state.checksum = *checksum;
  state.db_pages = static_cast<uint32_t>(*db_pages);
  state.wal.salt1 = static_cast<uint32_t>(*salt1);
  state.wal.salt2 = static_cast<uint32_t>(*salt2);
  state.wal.checkpoint_seq = static_cast<uint32_t>(*seq);
  state.wal.page_size = state.page_size;
  state.wal.offset = *offset;
  state.wal.checksum = {static_cast<uint32_t>(*sum0), static_cast<uint32_t>(*sum1)};

  UniqueFd fd(::open(m_pages_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::vector<std::byte> bytes(uint64_t{state.db_pages} * 8);
  if (pread_full(fd.get(), bytes, 0, m_pages_path) != bytes.size()) return std::nullopt;
  state.page_hashes.resize(state.db_pages);
  for (uint32_t i = 0; i < state.db_pages; ++i)
    state.page_hashes[i] = get_be64(bytes.data() + 8 * uint64_t{i});
  if (!state.consistent()) {
    log(LogLevel::debug, "local state does not match its page hashes; rehashing", {{"state", m_state_path}});
    return std::nullopt;
  }
  return state;
}

void LocalStateStore::ensure_dir() {
  if (::mkdir(m_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Failure("unable to create the state directory '" + m_dir + "': " + std::strerror(errno));
  }
}

void LocalStateStore::save(const ShippedState& state, const std::vector<uint32_t>& changed, bool full) {
  ensure_dir();
  if (full || !m_pages_fd) {
    m_pages_fd.reset(::open(m_pages_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!m_pages_fd) throw Failure("unable to open '" + m_pages_path + "': " + std::strerror(errno));
    full = true;
  }
  std::byte entry[8];
  if (full) {
    std::vector<std::byte> bytes(state.page_hashes.size() * 8);
    for (size_t i = 0; i < state.page_hashes.size(); ++i)
      put_be64(bytes.data() + 8 * i, state.page_hashes[i]);
    pwrite_all(m_pages_fd.get(), bytes, 0, m_pages_path);
  } else {
    for (uint32_t pgno : changed) {
      if (pgno == 0 || pgno > state.db_pages) continue;
      put_be64(entry, state.page_hashes[pgno - 1]);
      pwrite_all(m_pages_fd.get(), entry, uint64_t{pgno - 1} * 8, m_pages_path);
    }
  }
  if (::ftruncate(m_pages_fd.get(), static_cast<off_t>(uint64_t{state.db_pages} * 8)) != 0) {
    throw Failure("unable to truncate '" + m_pages_path + "': " + std::strerror(errno));
  }
  std::ostringstream out;
  out << k_state_magic << "\n"
      << "replica " << m_replica_url << "\n"
      << "page_size " << hex32(state.page_size) << "\n"
      << "txid " << format::txid_hex(state.txid) << "\n"
      << "checksum " << format::txid_hex(state.checksum) << "\n"
      << "db_pages " << hex32(state.db_pages) << "\n"
      << "wal_salt1 " << hex32(state.wal.salt1) << "\n"
      << "wal_salt2 " << hex32(state.wal.salt2) << "\n"
      << "wal_checkpoint_seq " << hex32(state.wal.checkpoint_seq) << "\n"
      << "wal_offset " << format::txid_hex(state.wal.offset) << "\n"
      << "wal_checksum0 " << hex32(state.wal.checksum.s0) << "\n"
      << "wal_checksum1 " << hex32(state.wal.checksum.s1) << "\n";
  write_file_atomically(m_state_path, out.str());
}

void LocalStateStore::remove() {
  ::unlink(m_state_path.c_str());
  ::unlink(m_pages_path.c_str());
  m_pages_fd.reset();
}

}  // namespace walship
