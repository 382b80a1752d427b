#include "lib/replica/restore.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <set>

#include "lib/format/keys.h"
#include "lib/format/replica_file.h"
#include "lib/replica/local_state.h"
#include "lib/replica/object_stream.h"
#include "lib/replica/page_image.h"
#include "lib/replica/snapshot.h"
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

void check_integrity(const std::string& path, IntegrityCheck check) {
  if (check == IntegrityCheck::checksum) return;
  sqlite::Database db(sqlite::immutable_uri(path), SQLITE_OPEN_READONLY);
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

// A bad object passed over while placing the local database among the
// replica's points: it then restores in full (without the point, if that
// object held it), which goes around the object too.
void warn_passed_over(const BadObjectError& e) {
  log(LogLevel::warn, "passing over a bad replica object while placing the local database",
      {{"object", e.key()}, {"why", e.what()}});
}

// A plan downloaded and applied into a temp file, not yet synced.
struct AppliedPlan {
  std::unique_ptr<TempFile> temp;
  std::unique_ptr<PageImage> image;
  std::vector<ObjectInfo> objects;
  uint64_t total = 0;
  bool reused = false;  // the image started from reuse_path's pages
  uint64_t reused_txid = 0;
};

std::vector<ObjectInfo> delta_objects(const std::vector<DeltaEntry>& deltas) {
  std::vector<ObjectInfo> objects;
  for (const DeltaEntry& delta : deltas) objects.push_back({delta.key, delta.size});
  return objects;
}

// The objects of `plan` in apply order: its snapshot, then its deltas.
std::vector<ObjectInfo> plan_objects(const RestorePlan& plan) {
  std::vector<ObjectInfo> objects{{plan.snapshot.key, plan.snapshot.size}};
  for (const ObjectInfo& delta : delta_objects(plan.deltas)) objects.push_back(delta);
  return objects;
}

uint64_t total_size(const std::vector<ObjectInfo>& objects) {
  uint64_t total = 0;
  for (const ObjectInfo& object : objects) total += object.size;
  return total;
}

// What the image holds before the first of the objects applied to it.
enum class ImageStart {
  empty,   // the first object is a snapshot
  copied,  // a local database's pages (restore --delta): the first delta may overlap its point
};

// Downloads and applies `applied.objects` in order onto its image. An object
// that does not decode or does not chain throws BadObjectError naming it;
// storage errors pass through as they are.
void apply_objects(AppliedPlan& applied, ImageStart start, const RestoreOptions& options, Storage& storage) {
  PageImage& image = *applied.image;
  Progress progress("restore", applied.total, !options.quiet);
  PlanStreams streams(storage, applied.objects, options.parallelism);
  for (size_t i = 0; i < applied.objects.size(); ++i) {
    const std::string name = storage.url() + "/" + applied.objects[i].key;
    try {
      CountingSource source(streams.open(i), progress);
      format::ReplicaReader reader(source, name);
      if (i == 0 && start == ImageStart::empty) {
        image.apply_snapshot(reader, name);
      } else {
        const bool first = i == 0;
        image.apply_delta(reader, name, first ? PageImage::Chain::overlapping : PageImage::Chain::exact);
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
}

// Downloads and applies `plan` into a fresh temp file.
AppliedPlan apply_plan(const RestorePlan& plan, const RestoreOptions& options, Storage& storage) {
  AppliedPlan applied;
  applied.objects = plan_objects(plan);
  applied.total = total_size(applied.objects);
  applied.temp = std::make_unique<TempFile>(options.output_path);
  applied.image = std::make_unique<PageImage>(applied.temp->fd(), applied.temp->path());
  apply_objects(applied, ImageStart::empty, options, storage);
  return applied;
}

// Where reuse_path's pages stand against `plan`: their point, and the
// deltas from there to the plan's TXID (none when they are there already).
struct Reuse {
  uint64_t point = 0;
  std::vector<DeltaEntry> deltas;
};

// `read` reads reuse_path's pages (hashing them, or copying them into the
// image too) and returns their whole-database checksum. nullopt, with `why`
// set, when they cannot be reused and the restore is a full one.
std::optional<Reuse> place_local_pages(const ReplicaListing& listing, const RestorePlan& plan,
                                       const RestoreOptions& options, Storage& storage, HeaderCache& headers,
                                       const std::function<uint64_t()>& read, std::string& why) {
  uint64_t sum = 0;
  try {
    sum = read();
  } catch (const Error& e) {
    // Not SQLite, or corrupt: --force replaces it all the same.
    why = std::string("the local database cannot be read (") + e.what() + ")";
    return std::nullopt;
  }
  const std::optional<uint64_t> point = point_of_database(options.output_path, sum, storage, listing, headers,
                                                          options.parallelism, warn_passed_over);
  if (!point) {
    why = "the local database is no point of the replica";
    return std::nullopt;
  }
  if (*point > plan.txid) {
    why = "the local database is past the point restored (at TXID " + format::txid_hex(*point) + ")";
    return std::nullopt;
  }
  if (*point == plan.txid) return Reuse{*point, {}};
  std::optional<DeltaChain> chain = chain_from_point(listing, *point, plan.txid, headers);
  if (!chain) {
    why = "no deltas the replica keeps lead from the local database's point (TXID " +
          format::txid_hex(*point) + ") to TXID " + format::txid_hex(plan.txid);
    return std::nullopt;
  }
  const uint64_t bytes = total_size(delta_objects(chain->deltas));
  if (bytes >= total_size(plan_objects(plan))) {
    why = "the deltas from the local database's point (TXID " + format::txid_hex(*point) + ", " +
          human_bytes(bytes) + ") are no smaller than a full restore";
    return std::nullopt;
  }
  return Reuse{*point, std::move(chain->deltas)};
}

// restore --delta: copies reuse_path's pages into a fresh temp file and, when
// they are a point of the replica at or before the plan's, applies only the
// deltas from there. nullopt, with `why` set, when a full restore is needed
// (see place_local_pages, or a delta on the way is bad).
std::optional<AppliedPlan> apply_reusing(const ReplicaListing& listing, const RestorePlan& plan,
                                         const RestoreOptions& options, Storage& storage,
                                         HeaderCache& headers, std::string& why) {
  AppliedPlan applied;
  applied.temp = std::make_unique<TempFile>(options.output_path);
  applied.image = std::make_unique<PageImage>(applied.temp->fd(), applied.temp->path());
  PageImage& image = *applied.image;
  const auto copy = [&] {
    image.copy_database(options.reuse_path);
    return image.checksum();
  };
  const std::optional<Reuse> reuse = place_local_pages(listing, plan, options, storage, headers, copy, why);
  if (!reuse) return std::nullopt;
  applied.reused = true;
  applied.reused_txid = reuse->point;
  applied.objects = delta_objects(reuse->deltas);
  applied.total = total_size(applied.objects);
  image.set_point(reuse->point, reuse->deltas.empty() ? plan.commit_time_ms : 0);
  try {
    apply_objects(applied, ImageStart::copied, options, storage);
  } catch (const BadObjectError& e) {
    warn_skipped(e, storage.url());
    why = "a delta from the local database's point is bad";
    return std::nullopt;
  }
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

std::optional<uint64_t> point_of_database(const std::string& db_path, uint64_t sum, Storage& storage,
                                          const ReplicaListing& listing, HeaderCache& headers,
                                          int parallelism,
                                          const std::function<void(const BadObjectError&)>& on_bad) {
  const std::optional<ShippedState> state = LocalStateStore(local_state_dir(db_path), storage.url()).load();
  if (state && state->checksum == sum) return state->txid;
  if (const auto found = find_point_by_checksum(storage, listing, headers, sum, parallelism, on_bad))
    return found->txid;
  return std::nullopt;
}

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

  const bool reuse = !options.reuse_path.empty() && path_exists(options.reuse_path);
  if (options.dry_run) {
    warn_if_older(plan, storage.url());
    result.dry_run = true;
    result.newest_txid = plan.newest_txid;
    result.txid = plan.txid;
    result.commit_time_ms = plan.commit_time_ms;
    result.objects = 1 + plan.deltas.size();
    result.downloaded_bytes = total_size(plan_objects(plan));
    if (!reuse) return result;
    const auto hash = [&] { return database_checksum(options.reuse_path); };
    const std::optional<Reuse> reusable =
        place_local_pages(listing, plan, options, storage, headers, hash, result.full_because);
    if (reusable) {
      result.reused = true;
      result.reused_txid = reusable->point;
      result.objects = reusable->deltas.size();
      result.downloaded_bytes = total_size(delta_objects(reusable->deltas));
    }
    return result;
  }

  std::optional<AppliedPlan> reused;
  if (reuse) reused = apply_reusing(listing, plan, options, storage, headers, result.full_because);
  if (reuse && !reused) {
    log(LogLevel::info, "restoring in full, not from the local database's pages",
        {{"db", options.reuse_path}, {"why", result.full_because}});
  }
  AppliedPlan applied = reused ? std::move(*reused)
                               : apply_avoiding(listing, plan, options, storage, headers, excluded, skipped);
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
  result.reused = applied.reused;
  result.reused_txid = applied.reused_txid;
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
