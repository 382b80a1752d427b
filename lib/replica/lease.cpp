#include "lib/replica/lease.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <fstream>
#include <vector>

#include "lib/format/keys.h"
#include "lib/replica/process_metrics.h"
#include "lib/util/byte_stream.h"
#include "lib/util/log.h"
#include "lib/util/state_file.h"
#include "lib/util/temp_name.h"
#include "lib/util/time.h"

namespace walship {

namespace {

constexpr std::string_view k_lease_magic = "walship-lease 1";
// Each writer's TXIDs stay under this many past its fence (2^40: a ship a
// millisecond for 34 years).
constexpr int k_generation_shift = 40;
// Old lease records are deleted in batches, one request for several.
constexpr uint64_t k_records_kept = 2;
constexpr uint64_t k_forget_batch = 8;

std::string first_line_of(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

LeaseIdentity make_identity() {
  LeaseIdentity me;
  me.writer = random_hex(8);
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof host - 1) == 0) me.host = host;
  if (me.host.empty()) me.host = "unknown";
  me.boot_id = first_line_of("/proc/sys/kernel/random/boot_id");
  char ns[128] = {};
  if (const ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1); n > 0)
    me.pid_ns.assign(ns, size_t(n));
  me.pid = ::getpid();
  if (const std::optional<PidStat> stat = read_pid_stat(me.pid)) me.start = stat->start_ticks;
  return me;
}

// Gone: no such process, a zombie (dead, not yet reaped by its parent), or
// a later process that reuses the pid (another start time).
bool holder_gone_here(const LeaseIdentity& holder) {
  if (holder.pid <= 0 || (::kill(static_cast<pid_t>(holder.pid), 0) != 0 && errno == ESRCH)) return true;
  const std::optional<PidStat> stat = read_pid_stat(holder.pid);
  if (!stat) return false;  // unreadable: assume alive
  return stat->state == 'Z' || stat->state == 'X' || (holder.start != 0 && stat->start_ticks != holder.start);
}

// A value of a lease record: one line, no spaces that would confuse a reader.
std::string one_line(std::string text) {
  std::replace_if(
      text.begin(), text.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return text;
}

}  // namespace

const LeaseIdentity& this_process() {
  static const LeaseIdentity me = make_identity();
  return me;
}

std::string encode_lease(const LeaseRecord& record) {
  StateFields fields;
  fields.set("writer", one_line(record.holder.writer));
  fields.set("host", one_line(record.holder.host));
  fields.set("boot-id", one_line(record.holder.boot_id));
  fields.set("pid-ns", one_line(record.holder.pid_ns));
  fields.set_dec("pid", static_cast<uint64_t>(record.holder.pid));
  fields.set_dec("start", record.holder.start);
  fields.set_dec("generation", record.generation);
  fields.set("since", format_rfc3339(static_cast<uint64_t>(record.since_ms)));
  fields.set("expires", format_rfc3339(static_cast<uint64_t>(record.expires_ms)));
  fields.set("released", record.released ? "true" : "false");
  fields.set("fenced", record.fenced ? "true" : "false");
  return render_state_file(k_lease_magic, fields);
}

std::optional<LeaseRecord> decode_lease(std::string_view text) {
  const std::optional<StateFields> fields = parse_state_file(text, k_lease_magic);
  if (!fields) return std::nullopt;
  LeaseRecord record;
  const auto writer = fields->text("writer");
  const auto host = fields->text("host");
  const auto pid = fields->dec("pid");
  const auto generation = fields->dec("generation");
  const auto since = fields->text("since");
  const auto expires = fields->text("expires");
  const auto released = fields->text("released");
  if (!writer || !host || !pid || !generation || !since || !expires || !released) return std::nullopt;
  const auto since_ms = parse_rfc3339(*since);
  const auto expires_ms = parse_rfc3339(*expires);
  if (!since_ms || !expires_ms || (*released != "true" && *released != "false") || *pid > INT64_MAX)
    return std::nullopt;
  record.holder.writer = *writer;
  record.holder.host = *host;
  record.holder.boot_id = fields->text("boot-id").value_or("");
  record.holder.pid_ns = fields->text("pid-ns").value_or("");
  record.holder.pid = static_cast<int64_t>(*pid);
  record.holder.start = fields->dec("start").value_or(0);
  record.generation = *generation;
  record.since_ms = static_cast<int64_t>(*since_ms);
  record.expires_ms = static_cast<int64_t>(*expires_ms);
  record.released = *released == "true";
  // Absent in records of a walship that did not write it.
  const auto fenced = fields->text("fenced").value_or("false");
  if (fenced != "true" && fenced != "false") return std::nullopt;
  record.fenced = fenced == "true";
  return record;
}

LeaseDecision decide_lease(const std::optional<LeaseRecord>& current, const LeaseIdentity& me, int64_t now_ms,
                           bool take_over, const std::function<bool(const LeaseIdentity&)>& holder_gone) {
  if (!current) return {true, false, "free"};
  if (current->released) return {true, false, "released"};
  if (current->holder == me) return {true, false, "ours"};
  // A holder of this machine (same kernel, same pid namespace) whose process
  // is gone, or whose pid is now ours: it can write nothing more, so a
  // restarted replicate neither waits for the expiry nor fences. Elsewhere a
  // pid says nothing.
  const bool here = !me.boot_id.empty() && current->holder.boot_id == me.boot_id && !me.pid_ns.empty() &&
                    current->holder.pid_ns == me.pid_ns;
  if (here && (current->holder.pid == me.pid || holder_gone(current->holder)))
    return {true, false, "holder gone"};
  // Expired or not, a holder elsewhere may be paused, not dead: fence it.
  if (now_ms > current->expires_ms) return {true, true, "expired"};
  if (take_over) return {true, true, "taken over"};
  return {false, false, "held"};
}

uint64_t fence_txid(uint64_t generation) { return generation << k_generation_shift; }

std::optional<uint64_t> first_txid_fence(const std::vector<format::FenceInfo>& fences, uint64_t newest,
                                         bool fenced, uint64_t generation) {
  std::optional<uint64_t> fence;
  if (fenced) fence = fence_txid(generation);
  for (const format::FenceInfo& f : fences) {
    if (f.after == newest && !fence) fence = f.fence;
  }
  // Only a writer without a lease can have gone past this generation's
  // fence: fence above it.
  if (fence && *fence <= newest) fence = fence_txid((newest >> k_generation_shift) + 1);
  return fence;
}

void write_fence(Storage& storage, const format::FenceInfo& fence) {
  MemorySource empty({});
  storage.put_if_absent(format::fence_key(fence), empty);
}

std::optional<uint64_t> behind_replica(const std::optional<ShippedState>& local, uint64_t newest,
                                       const std::string& previous_writer) {
  if (!local || local->writer.empty() || local->txid >= newest || local->writer == previous_writer)
    return std::nullopt;
  return local->txid;
}

FencedError behind_error(const std::string& db_path, const std::string& replica, uint64_t shipped_txid,
                         uint64_t newest, const std::string& more) {
  return FencedError("database '" + db_path + "' is behind its replica '" + replica +
                     "': this node last shipped TXID " + format::txid_hex(shipped_txid) +
                     ", and another writer has since taken the replica to TXID " + format::txid_hex(newest) +
                     ". Restore it first (walship restore --fast-forward -o " + db_path + " " + replica +
                     ")" + more);
}

std::optional<LeaseRecord> read_lease_record(Storage& storage, uint64_t seq) {
  MemorySink sink;
  const std::string key = format::lease_key(seq);
  if (!storage.get(key, sink)) return std::nullopt;
  const std::string text(reinterpret_cast<const char*>(sink.data().data()), sink.data().size());
  std::optional<LeaseRecord> record = decode_lease(text);
  if (!record) {
    throw Failure("lease record '" + storage.url() + "/" + key +
                  "' is not a walship lease: was it written by something else? remove it by hand once no "
                  "replicate runs on this replica");
  }
  return record;
}

std::optional<std::pair<uint64_t, LeaseRecord>> newest_lease_record(Storage& storage) {
  uint64_t newest = 0;
  for (const ObjectInfo& o : storage.list(std::string(format::k_lease_prefix))) {
    if (const auto seq = format::parse_lease_key(o.key)) newest = std::max(newest, *seq);
  }
  if (newest == 0) return std::nullopt;
  std::optional<LeaseRecord> record = read_lease_record(storage, newest);
  // Deleted since the LIST: its holder renewed twice meanwhile; look again.
  if (!record) return newest_lease_record(storage);
  return std::make_pair(newest, std::move(*record));
}

std::string describe_holder(const LeaseRecord& record) {
  return record.holder.host + " pid " + std::to_string(record.holder.pid) + " (writer " +
         record.holder.writer + "), holding it since " +
         format_rfc3339(static_cast<uint64_t>(record.since_ms)) + ", lease expiring " +
         format_rfc3339(static_cast<uint64_t>(record.expires_ms));
}

void LeaseWatch::listed(uint64_t newest_seq) {
  if (newest_seq == m_seq && m_record) return;
  m_seq = newest_seq;
  m_record.reset();
  if (newest_seq == 0) return;
  try {
    m_record = read_lease_record(m_storage, newest_seq);
  } catch (const Failure&) {
    // Not a lease record: the holder stays unknown, and the next record
    // found counts as a change.
  }
}

bool LeaseWatch::holder_changed() {
  const std::string known = m_record ? m_record->holder.writer : std::string();
  bool changed = false;
  for (;;) {
    std::optional<LeaseRecord> next;
    try {
      next = read_lease_record(m_storage, m_seq + 1);
    } catch (const Failure&) {
      return true;
    }
    if (!next) break;
    ++m_seq;
    changed = changed || next->holder.writer != known;
    m_record = std::move(next);
  }
  if (changed || m_seq == 0) return changed;
  // Nothing after the known record: nothing new, unless the holder renewed
  // past the records it keeps and deleted the known one too.
  try {
    return !read_lease_record(m_storage, m_seq);
  } catch (const Failure&) {
    return true;
  }
}

bool LeaseWatch::fence_pending(const std::vector<format::FenceInfo>& fences, int64_t now_ms) const {
  if (!m_record || !m_record->fenced || m_record->released || now_ms > m_record->expires_ms) return false;
  const uint64_t first = fence_txid(m_record->generation);
  return std::none_of(fences.begin(), fences.end(),
                      [&](const format::FenceInfo& f) { return f.fence >= first; });
}

Lease::Lease(Storage& storage, int64_t ttl_ms, bool take_over, Clock clock, Sleep sleep, LeaseIdentity me)
    : m_storage(storage),
      m_me(std::move(me)),
      m_ttl_ms(ttl_ms),
      m_take_over(take_over),
      m_clock(std::move(clock)),
      m_sleep(std::move(sleep)) {
  if (!m_clock) m_clock = [] { return static_cast<int64_t>(now_ms()); };
  if (!m_sleep)
    m_sleep = [](int64_t ms) { ::usleep(static_cast<useconds_t>(std::max<int64_t>(ms, 0)) * 1000); };
}

std::optional<std::pair<uint64_t, LeaseRecord>> Lease::read_newest() {
  return newest_lease_record(m_storage);
}

std::optional<LeaseRecord> Lease::read_record(uint64_t seq) { return read_lease_record(m_storage, seq); }

bool Lease::write_next(const LeaseRecord& record) {
  const std::string text = encode_lease(record);
  MemorySource source(std::as_bytes(std::span(text)));
  if (m_storage.put_if_absent(format::lease_key(m_seq + 1), source)) return true;
  // A write whose answer was lost, then retried, finds its own record
  // there: that is a success, not a takeover. (No other writer's record
  // can equal ours: the holder differs.)
  return read_record(m_seq + 1) == record;
}

Lease::Taken Lease::acquire(bool wait, std::string_view what_to_do) {
  bool waited = false;  // for a live lease's expiry, once
  for (;;) {
    const auto newest = read_newest();
    const std::optional<LeaseRecord> current =
        newest ? std::optional<LeaseRecord>(newest->second) : std::nullopt;
    const int64_t now = m_clock();
    const LeaseDecision decision = decide_lease(current, m_me, now, m_take_over, holder_gone_here);
    if (!decision.take) {
      // Held: wait once for its expiry. A holder that is gone (a node that
      // vanished) renews nothing and its lease is taken then; one that
      // renewed meanwhile is alive.
      if (!wait || waited || current->expires_ms - now > 2 * m_ttl_ms + 60'000) {
        throw FencedError("replica '" + m_storage.url() + "' belongs to another writer: " +
                          describe_holder(*current) + ". " + std::string(what_to_do));
      }
      waited = true;
      log(LogLevel::warn, "the replica's lease is held by another writer; waiting for it to expire",
          {{"replica", m_storage.url()}, {"holder", describe_holder(*current)}});
      m_sleep(current->expires_ms - now + 1);
      continue;
    }
    m_seq = newest ? newest->first : 0;
    LeaseRecord mine;
    mine.holder = m_me;
    mine.generation = (current ? current->generation : 0) + 1;
    mine.since_ms = now;
    mine.expires_ms = now + m_ttl_ms;
    mine.fenced = decision.fence;
    if (!write_next(mine)) continue;  // another writer wrote that seq first: look again
    ++m_seq;
    m_record = mine;
    m_renewed_ms = now;
    m_lost = false;
    m_oldest_kept = 0;  // unknown: the first clean-up lists
    if (decision.why != "free") {
      log(decision.fence ? LogLevel::warn : LogLevel::debug, "took the replica's lease",
          {{"replica", m_storage.url()},
           {"how", decision.why},
           {"generation", mine.generation},
           {"previous", current ? describe_holder(*current) : std::string()}});
    }
    forget_old_records();
    return {decision.fence, current};
  }
}

int64_t Lease::renew_due_ms() const { return m_seq == 0 ? 0 : m_renewed_ms + m_ttl_ms / 3; }

void Lease::renew_if_due(int64_t now_ms) {
  if (m_lost) throw FencedError("replica '" + m_storage.url() + "' was taken over by another writer");
  if (m_seq == 0 || now_ms < renew_due_ms()) return;
  const int64_t now = m_clock();
  LeaseRecord next = m_record;
  next.expires_ms = now + m_ttl_ms;
  if (!write_next(next)) {
    // Someone wrote our next record: taken over. (A lease that expired with
    // nobody taking it is still ours: its next record is still free.)
    m_lost = true;
    std::string by;
    try {
      if (const auto newest = read_newest()) by = ": now held by " + describe_holder(newest->second);
    } catch (const Error&) {
    }
    throw FencedError("replica '" + m_storage.url() + "' was taken over by another writer" + by +
                      "; this writer stops writing to it");
  }
  ++m_seq;
  m_record = next;
  m_renewed_ms = now;
  if (m_seq - m_oldest_kept >= k_records_kept + k_forget_batch) forget_old_records();
}

bool Lease::confirm_held() {
  if (!held() || m_clock() >= m_record.expires_ms) return false;
  if (read_record(m_seq + 1)) {
    m_lost = true;
    return false;
  }
  return true;
}

void Lease::forget_old_records() {
  if (m_seq <= k_records_kept) return;
  const uint64_t keep_from = m_seq - k_records_kept + 1;
  std::vector<std::string> keys;
  if (m_oldest_kept == 0 || m_oldest_kept + 64 < keep_from) {
    for (const ObjectInfo& o : m_storage.list(std::string(format::k_lease_prefix))) {
      if (const auto seq = format::parse_lease_key(o.key); seq && *seq < keep_from) keys.push_back(o.key);
    }
  } else {
    for (uint64_t seq = m_oldest_kept; seq < keep_from; ++seq) keys.push_back(format::lease_key(seq));
  }
  try {
    if (!keys.empty()) m_storage.remove(keys);
    m_oldest_kept = keep_from;
  } catch (const StorageError& e) {
    log(LogLevel::debug, "unable to delete old lease records; will try again",
        {{"replica", m_storage.url()}, {"error", e.what()}});
  }
}

void Lease::release() {
  if (!held()) return;
  LeaseRecord next = m_record;
  next.released = true;
  next.expires_ms = m_clock();
  try {
    if (write_next(next)) ++m_seq;
  } catch (const Error& e) {
    log(LogLevel::warn, "unable to release the replica's lease; the next writer waits for it to expire",
        {{"replica", m_storage.url()}, {"error", e.what()}});
  }
  m_seq = 0;
}

}  // namespace walship
