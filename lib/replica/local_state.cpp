#include "lib/replica/local_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "lib/format/keys.h"
#include "lib/util/byte_stream.h"
#include "lib/util/endian.h"
#include "lib/util/error.h"
#include "lib/util/log.h"
#include "lib/util/state_file.h"

namespace walship {

namespace {

constexpr std::string_view k_state_magic = "walship-state 1";

// The state file's fields (its pages are in the pages file).
StateFields state_fields(const ShippedState& state, const std::string& replica_url) {
  StateFields fields;
  fields.set("replica", replica_url);
  fields.set_hex("page_size", state.page_size, 8);
  fields.set_hex("txid", state.txid);
  fields.set_hex("checksum", state.checksum);
  fields.set_hex("db_pages", state.db_pages, 8);
  fields.set_hex("wal_salt1", state.wal.salt1, 8);
  fields.set_hex("wal_salt2", state.wal.salt2, 8);
  fields.set_hex("wal_checkpoint_seq", state.wal.checkpoint_seq, 8);
  fields.set_hex("wal_offset", state.wal.offset);
  fields.set_hex("wal_checksum0", state.wal.checksum.s0, 8);
  fields.set_hex("wal_checksum1", state.wal.checksum.s1, 8);
  if (!state.writer.empty()) fields.set("writer", state.writer);
  return fields;
}

// The state `fields` hold, without its page hashes; nullopt when a field is
// missing or malformed, or the state is another replica's.
std::optional<ShippedState> parse_state(const StateFields& fields, const std::string& replica_url) {
  const auto page_size = fields.hex32("page_size"), db_pages = fields.hex32("db_pages"),
             salt1 = fields.hex32("wal_salt1"), salt2 = fields.hex32("wal_salt2"),
             seq = fields.hex32("wal_checkpoint_seq"), sum0 = fields.hex32("wal_checksum0"),
             sum1 = fields.hex32("wal_checksum1");
  const auto txid = fields.hex("txid"), checksum = fields.hex("checksum"), offset = fields.hex("wal_offset");
  if (fields.text("replica").value_or("") != replica_url || !page_size || !txid || !checksum || !db_pages ||
      !salt1 || !salt2 || !seq || !offset || !sum0 || !sum1) {
    return std::nullopt;
  }
  ShippedState state;
  state.page_size = *page_size;
  state.txid = *txid;
  state.checksum = *checksum;
  state.db_pages = *db_pages;
  state.wal.salt1 = *salt1;
  state.wal.salt2 = *salt2;
  state.wal.checkpoint_seq = *seq;
  state.wal.page_size = state.page_size;
  state.wal.offset = *offset;
  state.wal.checksum = {*sum0, *sum1};
  state.writer = fields.text("writer").value_or("");
  return state;
}

}  // namespace

bool ShippedState::consistent() const {
  if (page_hashes.size() != db_pages) return false;
  uint64_t sum = 0;
  for (uint64_t h : page_hashes) sum ^= h;
  return sum == checksum;
}

ShippedState::Difference ShippedState::difference(const std::vector<uint64_t>& hashes) const {
  Difference diff;
  diff.checksum = checksum;
  const auto pages = static_cast<uint32_t>(hashes.size());
  for (uint32_t pgno = 1; pgno <= pages; ++pgno) {
    const uint64_t old = pgno <= db_pages ? page_hashes[pgno - 1] : 0;
    if (old != hashes[pgno - 1]) {
      diff.changed.push_back(pgno);
      diff.checksum ^= old ^ hashes[pgno - 1];
    }
  }
  for (uint32_t pgno = pages + 1; pgno <= db_pages; ++pgno) diff.checksum ^= page_hashes[pgno - 1];
  return diff;
}

LocalStateStore::LocalStateStore(std::string dir, const std::string& replica_url) : m_dir(std::move(dir)) {
  m_replica_url = replica_url;
  const std::string id = format::txid_hex(XXH3_64bits(replica_url.data(), replica_url.size()));
  m_state_path = m_dir + "/" + id + ".state";
  m_pages_path = m_dir + "/" + id + ".pages";
}

std::optional<ShippedState> LocalStateStore::load() const {
  const std::optional<StateFields> fields = read_state_file(m_state_path, k_state_magic);
  if (!fields) return std::nullopt;
  std::optional<ShippedState> parsed = parse_state(*fields, m_replica_url);
  if (!parsed) return std::nullopt;
  ShippedState& state = *parsed;

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
  return parsed;
}

void LocalStateStore::ensure_dir() {
  if (::mkdir(m_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Failure("unable to create the state directory '" + m_dir + "': " + std::strerror(errno));
  }
}

void LocalStateStore::save(const ShippedState& state, const std::vector<uint32_t>& changed, bool full) {
  ensure_dir();
  // Opened for each save, not kept: an idle database costs no descriptor.
  const UniqueFd fd(::open(m_pages_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) throw Failure("unable to open '" + m_pages_path + "': " + std::strerror(errno));
  full = full || !m_pages_written;
  m_pages_written = false;  // until the whole save succeeds
  std::byte entry[8];
  if (full) {
    std::vector<std::byte> bytes(state.page_hashes.size() * 8);
    for (size_t i = 0; i < state.page_hashes.size(); ++i)
      put_be64(bytes.data() + 8 * i, state.page_hashes[i]);
    pwrite_all(fd.get(), bytes, 0, m_pages_path);
  } else {
    for (uint32_t pgno : changed) {
      if (pgno == 0 || pgno > state.db_pages) continue;
      put_be64(entry, state.page_hashes[pgno - 1]);
      pwrite_all(fd.get(), entry, uint64_t{pgno - 1} * 8, m_pages_path);
    }
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(uint64_t{state.db_pages} * 8)) != 0) {
    throw Failure("unable to truncate '" + m_pages_path + "': " + std::strerror(errno));
  }
  write_state_file(m_state_path, k_state_magic, state_fields(state, m_replica_url), 0600);
  m_pages_written = true;
}

void LocalStateStore::remove() {
  ::unlink(m_state_path.c_str());
  ::unlink(m_pages_path.c_str());
  m_pages_written = false;
}

}  // namespace walship
