#include "lib/replica/restore.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <set>

#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/object_stream.h"
#include "lib/replica/page_image.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/progress.h"
#include "lib/util/time.h"

namespace walship {

namespace {

// Counts the bytes a reader pulls through, for the progress bar.
class CountingSource : public ByteSource {
 public:
  CountingSource(ByteSource& inner, Progress& progress) : m_inner(inner), m_progress(progress) {}
  uint64_t size() const override { return m_inner.size(); }
  size_t read(std::span<std::byte> out) override {
    const size_t n = m_inner.read(out);
    m_progress.add(n);
    return n;
  }
  void rewind() override { m_inner.rewind(); }

 private:
  ByteSource& m_inner;
  Progress& m_progress;
};

// Streams the plan's objects in apply order. Small objects (deltas, mostly)
// are fetched up to `parallelism` ahead so that many small GETs overlap; a big
// one is fetched as parallel ranges when its turn comes. Memory stays bounded
// by a few chunks per stream.
class PlanStreams {
 public:
  PlanStreams(Storage& storage, std::vector<ObjectInfo> objects, int parallelism)
      : m_storage(storage), m_objects(std::move(objects)), m_parallelism(parallelism) {}

  ObjectStream& open(size_t index) {
    while (m_opened < m_objects.size() &&
           (m_opened <= index || (m_opened < index + static_cast<size_t>(m_parallelism) &&
                                  m_objects[m_opened].size <= ObjectStream::k_default_chunk_size))) {
      const ObjectInfo& object = m_objects[m_opened];
      m_streams.push_back(std::make_unique<ObjectStream>(m_storage, object.key, object.size, m_parallelism));
      ++m_opened;
    }
    return *m_streams[index];
  }
  void close(size_t index) { m_streams[index].reset(); }

 private:
  Storage& m_storage;
  std::vector<ObjectInfo> m_objects;
  int m_parallelism;
  size_t m_opened = 0;
  std::vector<std::unique_ptr<ObjectStream>> m_streams;
};

// SQLite URI for opening the restored file read-only without creating -wal or
// -shm files beside it: immutable=1 tells SQLite nothing else can change it.
std::string immutable_uri(const std::string& path) {
  std::string uri = "file:";
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      uri += buf;
    } else {
      uri += c;
    }
  }
  return uri + "?immutable=1";
}

void check_integrity(const std::string& path, IntegrityCheck check) {
  if (check == IntegrityCheck::checksum) return;
  sqlite::Database db(immutable_uri(path), SQLITE_OPEN_READONLY);
  const std::string pragma = check == IntegrityCheck::full ? "PRAGMA integrity_check" : "PRAGMA quick_check";
  sqlite::Statement stmt(db, pragma);
  if (!stmt.step()) throw Failure(pragma + " returned nothing on the restored database");
  const std::string first = stmt.column_text(0);
  if (first != "ok") {
    throw Failure("the restored database fails " + pragma + " (" + first +
                  "): the replica is corrupt; run walship verify, or restore an earlier point with --txid");
  }
}

void remove_stale_sidecars(const std::string& output) {
  for (const char* suffix : {"-wal", "-shm", "-journal"}) {
    const std::string path = output + suffix;
    if (!path_exists(path)) continue;
    if (::unlink(path.c_str()) != 0) {
      throw Failure(errno_message(
          "unable to remove stale '" + path + "' (it would corrupt the restored database)", errno));
    }
    log(LogLevel::warn, "removed stale file beside the restored database", {{"path", path}});
  }
}

// Checks what can be checked before any download: PATH and its directory.
// Returns false when --if-db-not-exists says there is nothing to do.
bool check_output(const RestoreOptions& options) {
  const std::string& output = options.output_path;
  if (output.empty()) throw UsageError("missing output path: pass -o PATH");
  struct stat st {};
  if (::stat(output.c_str(), &st) == 0) {
    if (options.if_db_not_exists) return false;
    if (S_ISDIR(st.st_mode))
      throw UsageError("output '" + output + "' is a directory: give a file path with -o");
    if (!options.force) {
      throw UsageError("output '" + output +
                       "' already exists: pass --force to replace it, or choose another path");
    }
  }
  const std::string dir = dir_name(output);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw UsageError("output directory '" + dir + "' does not exist: create it first");
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    throw Failure(errno_message("unable to write to output directory '" + dir + "'", errno));
  }
  return true;
}

// Logs the object restore leaves out and why.
void warn_skipped(const BadObjectError& e, const std::string& replica) {
  log(LogLevel::warn, "skipping a bad replica object: restoring by another path",
      {{"object", replica + "/" + e.key()}, {"why", e.what()}});
}

// plan_restore over the listing without `excluded`; an object whose header
// does not decode while planning joins `excluded` and planning starts over.
// Bounded: each round excludes one more object of the listing.
// When no plan is left, the error names the bad objects that were skipped
// (the reason there is no path); an unreachable newest TXID names them itself.
RestorePlan plan_avoiding(const ReplicaListing& listing, const RestoreTarget& target, HeaderCache& headers,
                          const std::string& replica, std::set<std::string>& excluded,
                          std::vector<std::string>& skipped) {
  while (true) {
    try {
      return plan_restore(listing, target, headers, replica, excluded);
    } catch (const BadObjectError& e) {
      if (!excluded.insert(e.key()).second) throw;
      warn_skipped(e, replica);
      skipped.push_back(e.what());
    } catch (const StorageError&) {
      throw;
    } catch (const UnreachableNewestError&) {
      throw;
    } catch (const Failure& e) {
      if (skipped.empty()) throw;
      std::string message = std::string(e.what()) + "; skipped bad objects:";
      for (const std::string& why : skipped) message += " " + why + ";";
      message.pop_back();
      throw Failure(message);
    }
  }
}

// An --allow-older plan short of the replica's newest TXID is news on stderr
// too, for logs that do not keep stdout.
void warn_if_older(const RestorePlan& plan, const std::string& replica) {
  if (plan.txid >= plan.newest_txid) return;
  log(LogLevel::warn, "the newest TXID is not reachable: restoring the newest reachable one",
      {{"replica", replica},
       {"newest", format::txid_hex(plan.newest_txid)},
       {"restoring", format::txid_hex(plan.txid)}});
}

// A plan downloaded and applied into a temp file, not yet synced.
struct AppliedPlan {
  std::unique_ptr<TempFile> temp;
  std::unique_ptr<PageImage> image;
  std::vector<ObjectInfo> objects;
  uint64_t total = 0;
};

// Downloads and applies `plan` into a fresh temp file. An object that does
// not decode or does not chain throws BadObjectError naming it; storage
// errors pass through as they are.
AppliedPlan apply_plan(const RestorePlan& plan, const RestoreOptions& options, Storage& storage) {
  AppliedPlan applied;
  applied.objects.push_back({plan.snapshot.key, plan.snapshot.size});
  for (const DeltaEntry& delta : plan.deltas) applied.objects.push_back({delta.key, delta.size});
  for (const ObjectInfo& object : applied.objects) applied.total += object.size;

  applied.temp = std::make_unique<TempFile>(options.output_path);
  applied.image = std::make_unique<PageImage>(applied.temp->fd(), applied.temp->path());
  PageImage& image = *applied.image;
  Progress progress("restore", applied.total, !options.quiet);
  PlanStreams streams(storage, applied.objects, options.parallelism);
  for (size_t i = 0; i < applied.objects.size(); ++i) {
    const std::string name = storage.url() + "/" + applied.objects[i].key;
    try {
      CountingSource source(streams.open(i), progress);
      format::ReplicaReader reader(source, name);
      if (i == 0) {
        image.apply_snapshot(reader, name);
      } else {
        image.apply_delta(reader, name);
      }
    } catch (const StorageError&) {
      throw;
    } catch (const Failure& e) {
      // Decoding and chaining errors. A local write error (disk full) lands
      // here too: it then fails each replan the same way, bounded, and the
      // final error still carries its message.
      throw BadObjectError(applied.objects[i].key, e.what());
    }
    streams.close(i);
  }
  progress.finish();
  image.finish();
  return applied;
}

// Applies `plan`; when an object on it is bad, excludes it, plans again
// (other levels, an older snapshot forward; `plan` becomes the new plan) and
// starts over in a fresh temp file. Restarting the whole apply re-downloads what was already applied:
// wasteful, but simple and correct, and bad objects are rare. Bounded by the
// number of objects in the listing.
AppliedPlan apply_avoiding(const ReplicaListing& listing, RestorePlan& plan, const RestoreOptions& options,
                           Storage& storage, HeaderCache& headers, std::set<std::string>& excluded,
                           std::vector<std::string>& skipped) {
  while (true) {
    try {
      return apply_plan(plan, options, storage);
    } catch (const BadObjectError& e) {
      if (!excluded.insert(e.key()).second) throw;
      warn_skipped(e, storage.url());
      skipped.push_back(e.what());
    }
    plan = plan_avoiding(listing, options.target, headers, storage.url(), excluded, skipped);
  }
}

}  // namespace

IntegrityCheck parse_integrity_check(const std::string& name) {
  if (name == "checksum") return IntegrityCheck::checksum;
  if (name == "quick") return IntegrityCheck::quick;
  if (name == "full") return IntegrityCheck::full;
  throw UsageError("invalid --verify '" + name + "': use checksum, quick or full");
}

RestoreResult run_restore(const RestoreOptions& options, Storage& storage) {
  RestoreResult result;
  if (!options.dry_run && !check_output(options)) {
    result.skipped = true;
    result.skip_reason = "output '" + options.output_path + "' exists";
    return result;
  }
  const ReplicaListing listing = list_replica(storage);
  if (listing.snapshots.empty()) {
    if (options.if_replica_exists) {
      result.skipped = true;
      result.skip_reason = "no replica at '" + storage.url() + "'";
      return result;
    }
    if (listing.empty()) {
      throw Failure(
          "no replica at '" + storage.url() +
          "' (nothing found there): check the URL, or pass --if-replica-exists to treat this as success");
    }
  }
  HeaderCache headers(storage);
  std::set<std::string> excluded;
  std::vector<std::string> skipped;  // why each excluded object is bad, for the final error
  RestorePlan plan = plan_avoiding(listing, options.target, headers, storage.url(), excluded, skipped);

  if (options.dry_run) {
    warn_if_older(plan, storage.url());
    result.dry_run = true;
    result.newest_txid = plan.newest_txid;
    result.txid = plan.txid;
    result.commit_time_ms = plan.commit_time_ms;
    result.objects = 1 + plan.deltas.size();
    result.downloaded_bytes = plan.snapshot.size;
    for (const DeltaEntry& delta : plan.deltas) result.downloaded_bytes += delta.size;
    return result;
  }

  AppliedPlan applied = apply_avoiding(listing, plan, options, storage, headers, excluded, skipped);
  warn_if_older(plan, storage.url());
  result.newest_txid = plan.newest_txid;
  TempFile& temp = *applied.temp;
  const PageImage& image = *applied.image;
  const std::vector<ObjectInfo>& objects = applied.objects;
  const uint64_t total = applied.total;
  fsync_fd(temp.fd(), temp.path());
  temp.close();
  check_integrity(temp.path(), options.integrity);
  remove_stale_sidecars(options.output_path);
  temp.commit();

  result.txid = image.txid();
  result.commit_time_ms = image.commit_time_ms();
  result.checksum = image.checksum();
  result.db_pages = image.db_pages();
  result.page_size = image.page_size();
  result.objects = objects.size();
  result.downloaded_bytes = total;
  if (log_enabled(LogLevel::info)) {
    log(LogLevel::info, "restored",
        {{"db", options.output_path},
         {"replica", storage.url()},
         {"txid", format::txid_hex(result.txid)},
         {"point_time", format_rfc3339(result.commit_time_ms)},
         {"objects", result.objects},
         {"bytes", total}});
  }
  return result;
}

}  // namespace walship
